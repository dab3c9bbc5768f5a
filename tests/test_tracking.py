"""Per-run TensorBoard curves (bench/train/tracking.py): what the loop writes, that it is read back as the history,
that a resumed run has one point per epoch, and that turning it off changes no run identity."""

import dataclasses

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import bench.train.loop as loop
from bench.build import benchmark_from, method_from
from bench.compose import compose
from bench.config import config_dict
from bench.data.splits import load_splits
from bench.records import HISTORY_ROWS
from bench.run import resolve_spec
from bench.spec import compute_run_id
from bench.train.config import TrainerConfig
from bench.train.tracking import LR_TAG, TAGS, EpochWriter, epoch_scalars, tensorboard_dir
from conftest import FAST

RUN_ID = "0123456789abcdef"


def _curves(log_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _f32(x: float) -> float:  # TensorBoard stores scalars as float32
    return float(np.float32(x))


@pytest.fixture(scope="module")
def tiny():
    """(method factory, train, val) of a 60-sample ggm-synth: two tabular views, a few steps per epoch."""
    bench = benchmark_from("ggm-synth", {"p": 6, "n_per_class": 20, "n_test_per_class": 2})
    train_ds, val_ds, _ = load_splits(bench, 1.0, 0)
    return (lambda: method_from("mvae", bench.spec(), {"latent_dim": 2, "hidden": 8})), train_ds, val_ds


def _trainer(epochs: int) -> dict:
    return {**config_dict(TrainerConfig(device="cpu", epochs=epochs, batch_size=16)), "gradient_clipping": 0.0}


def test_every_history_key_has_a_tag():
    assert set(TAGS) == {key for key, *_ in HISTORY_ROWS}
    assert epoch_scalars({"epoch": 0, "train_loss": 2.5}, lr=0.1) == {"train/loss": 2.5, LR_TAG: 0.1}


def test_training_writes_one_point_per_epoch_equal_to_the_history(tiny, tmp_path):
    make, train_ds, val_ds = tiny
    tb = tensorboard_dir(tmp_path, RUN_ID)
    assert tb == tmp_path / "tensorboard" / RUN_ID
    result = loop.train(make(), train_ds, val_ds, _trainer(2), RUN_ID, tensorboard_dir=tb)
    curves = _curves(tb)
    assert set(curves) == {"train/loss", "val/loss", "val/probe", "lr"}
    for key, tag in TAGS.items():
        assert curves[tag] == [(h["epoch"], _f32(h[key])) for h in result.history]
    assert curves["lr"] == [(0, _f32(1e-3)), (1, _f32(1e-3))]


def test_a_resumed_run_continues_its_curves_without_duplicates(tiny, tmp_path):
    make, train_ds, val_ds = tiny
    ckpt, tb = tmp_path / "ckpt", tmp_path / "tb"
    loop.train(make(), train_ds, val_ds, _trainer(2), RUN_ID, ckpt_dir=ckpt, tensorboard_dir=tb)
    # the same run with a longer budget resumes after epoch 1 and adds epoch 2 in a second event file
    result = loop.train(make(), train_ds, val_ds, _trainer(3), RUN_ID, ckpt_dir=ckpt, tensorboard_dir=tb)
    assert result.resumed_from == 2 and len(list(tb.iterdir())) == 2
    assert _curves(tb)["train/loss"] == [(h["epoch"], _f32(h["train_loss"])) for h in result.history]


def test_a_writer_purges_the_points_an_interrupted_process_left_from_its_first_epoch(tmp_path):
    with EpochWriter(tmp_path, first_epoch=0) as w:
        for epoch in range(3):
            w.write(epoch, {"train/loss": 10.0 + epoch})
    # a process that resumes at epoch 1 (its checkpoint older than the events) writes epochs 1 and 2 again
    with EpochWriter(tmp_path, first_epoch=1) as w:
        for epoch in (1, 2):
            w.write(epoch, {"train/loss": 20.0 + epoch})
    assert _curves(tmp_path)["train/loss"] == [(0, 10.0), (1, 21.0), (2, 22.0)]


def test_no_folder_without_a_written_epoch(tmp_path):
    with EpochWriter(tmp_path / "tb", first_epoch=3):
        pass
    assert not (tmp_path / "tb").exists()


def test_only_rank_zero_writes(tiny, tmp_path, monkeypatch):
    make, train_ds, val_ds = tiny
    real = loop.init_engine
    monkeypatch.setattr(loop, "init_engine", lambda m, t: dataclasses.replace(real(m, t), rank=1))
    loop.train(make(), train_ds, None, _trainer(1), RUN_ID, tensorboard_dir=tmp_path / "tb")
    assert not (tmp_path / "tb").exists()


def test_the_switch_is_not_identity_and_turns_writing_off(tmp_path, monkeypatch):
    import bench.train.worker
    from bench.store import ResultStore

    on, off = (resolve_spec(compose(FAST + [f"trainer.tensorboard={v}"])) for v in ("true", "false"))
    assert on["trainer"]["tensorboard"] is True and off["trainer"]["tensorboard"] is False
    assert compute_run_id(on) == compute_run_id(off)
    assert compute_run_id(on) != compute_run_id(resolve_spec(compose(FAST + ["trainer.epochs=3"])))
    seen = []

    class Stop(Exception):
        pass

    def spy(*args, **kw):
        seen.append(kw["tensorboard_dir"])
        raise Stop

    monkeypatch.setattr(bench.train.worker, "train", spy)
    store = ResultStore(tmp_path)
    for spec in (on, off):
        with pytest.raises(Stop):
            bench.train.worker.execute(spec, compute_run_id(spec), store)
    assert seen == [tensorboard_dir(tmp_path, compute_run_id(on)), None]


def test_the_sweep_names_tensorboard_only_where_there_are_curves(tmp_path):
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from bench.cli import _print_trackers

    def said() -> str:
        out = io.StringIO()
        _print_trackers(Console(file=out, width=200), SimpleNamespace(tuned=False), tmp_path, None, None)
        return out.getvalue()

    (tmp_path / "tensorboard").mkdir()   # the folder alone (every run had trainer.tensorboard=false) is no curve
    assert "tensorboard" not in said()
    writer = EpochWriter(tensorboard_dir(tmp_path, RUN_ID))
    writer.write(0, {"train/loss": 1.0})
    writer.close()
    assert f"tensorboard --logdir {tmp_path}" in said()
