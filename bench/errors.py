"""Errors the CLI turns into one clear line and a non-zero exit."""


class BenchError(Exception):
    """Bad input from the user: the CLI prints the message alone and exits 2."""

    exit_code = 2


class RunFailed(Exception):
    """A run that started and failed; it is recorded as failed and the CLI exits 1."""

    exit_code = 1


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


class DataError(BenchError):
    """A paper dataset on disk is corrupt or partial; the message names the file and what is wrong."""


class DataMissing(DataError):
    """A paper dataset is absent (``missing``) or lacks some of its files (``incomplete``).

    ``missing_files`` lists the absent paths, relative to the benchmark's folder."""

    def __init__(self, message: str, missing_files: tuple[str, ...] = (), state: str = "missing"):
        super().__init__(message)
        self.missing_files = tuple(missing_files)
        self.state = state
