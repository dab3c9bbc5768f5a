"""The untrained floor: the harness's per-modality encoders at their random initialisation, never trained.

Every leaderboard table shows this baseline's number as the floor a method has to clear: a probe on random
features of separable data is far above chance, so "above chance" alone does not show that training learned
anything (see docs/evaluation.md, "Chance levels and the untrained floor").
"""

from baselines.untrained.model import Untrained

__all__ = ["Untrained"]
