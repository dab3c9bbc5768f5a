"""Shared neural building blocks: per-modality encoders/decoders (:mod:`bench.nn.modules`) and the
distributions every VAE uses (:mod:`bench.nn.dists`)."""
