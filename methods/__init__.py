"""The seed methods (CM-GLasso, PMRL, DCMEM): importing this package registers those that have landed."""

from methods import cm_glasso, dcmem, pmrl  # noqa: F401
