"""The DeepSpeed training loop, checkpoints and progress (:mod:`bench.train.loop`)."""
