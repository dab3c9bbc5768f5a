"""The embedded offline benchmarks (docs/datasets.md "Embedded benchmarks"): importing this package registers them."""

from bench.data.embedded import (  # noqa: F401  (imported for registration)
    breast_cancer,
    digits_caption,
    digits_ms,
    digits_poly5,
    digits_seg,
    ggm_synth,
    mfeat6,
)
