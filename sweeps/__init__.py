"""Suites, search spaces and the Hydra config tree (``sweeps/conf``)."""
