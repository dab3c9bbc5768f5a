"""Errors the CLI turns into one clear line and a non-zero exit."""


class BenchError(Exception):
    """Bad input from the user: the CLI prints the message alone and exits 2."""

    exit_code = 2


class RunFailed(Exception):
    """A run that started and failed; it is recorded as failed and the CLI exits 1."""

    exit_code = 1


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""
