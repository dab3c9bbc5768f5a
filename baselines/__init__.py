"""The baselines (MVAE, MMVAE+, MoPoE, MVP): importing this package registers them."""

from baselines import mmvae_plus, mopoe, mvae, mvp  # noqa: F401
