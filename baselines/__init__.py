"""The baselines (MVAE, MMVAE+, MoPoE, MVP) and the untrained floor: importing this package registers them."""

from baselines import mmvae_plus, mopoe, mvae, mvp, untrained  # noqa: F401
