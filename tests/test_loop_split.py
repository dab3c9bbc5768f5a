"""bench/train/loop.py's steps: train() is init_engine, resume, then per epoch train_epoch, validate and
checkpoint_epoch, so the steps driven by hand give train()'s numbers bit for bit, and resume restores what
checkpoint_epoch saved."""

import pytest
import torch

import bench.train.loop as loop
from bench.build import benchmark_from, method_from
from bench.config import config_dict
from bench.data.splits import load_splits
from bench.spec import derive_seed
from bench.train.config import TrainerConfig

RUN_ID = "fedcba9876543210"
TRAINER = {**config_dict(TrainerConfig(device="cpu", epochs=2, batch_size=16)), "gradient_clipping": 0.0}


@pytest.fixture(scope="module")
def tiny():
    """(method factory, train, val) of a 60-sample ggm-synth; mvae samples noise, so seeding is exercised."""
    bench = benchmark_from("ggm-synth", {"p": 6, "n_per_class": 20, "n_test_per_class": 2})
    train_ds, val_ds, _ = load_splits(bench, 0.5, 0)

    def make():
        torch.manual_seed(derive_seed(RUN_ID, "init"))  # as bench.train.worker.execute does
        return method_from("mvae", bench.spec(), {"latent_dim": 2, "hidden": 8})
    return make, train_ds, val_ds


def test_the_steps_by_hand_give_trains_numbers(tiny, tmp_path):
    make, train_ds, val_ds = tiny
    whole = loop.train(make(), train_ds, val_ds, TRAINER, RUN_ID, ckpt_dir=tmp_path / "a")

    setup = loop.init_engine(make(), TRAINER)
    start, history = loop.resume(setup, tmp_path / "b")
    assert (start, history) == (0, [])
    for epoch in range(2):
        train_loss, seen = loop.train_epoch(setup, train_ds, RUN_ID, epoch, 2, TRAINER["batch_size"])
        history.append({"epoch": epoch, "train_loss": train_loss,
                        **loop.validate(setup, val_ds, RUN_ID, epoch, TRAINER["batch_size"])})
        loop.checkpoint_epoch(setup, tmp_path / "b", epoch, 2, history)
        assert seen == len(train_ds)
    assert history == whole.history  # floats compared exactly
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "val_probe"}
    assert whole.samples == 2 * len(train_ds) and whole.resumed_from == 0
    assert loop.validate(setup, None, RUN_ID, 0, 16) == {}

    # a fresh engine resumes where the checkpoint left off, with the saved weights
    again = loop.init_engine(make(), TRAINER)
    assert loop.resume(again, tmp_path / "b") == (2, history)
    for name, p in again.module.state_dict().items():
        assert torch.equal(p, setup.module.state_dict()[name]), name
