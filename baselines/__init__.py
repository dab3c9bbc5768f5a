"""The baselines (MVAE, MMVAE+, MoPoE, MVP): importing this package registers them."""

from baselines import mvae  # noqa: F401
