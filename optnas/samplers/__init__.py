"""Samplers: the MSuNAS step on arrays and the Optuna sampler that runs it inside a study.

A layer below configurations and studies: ``optnas.studies.sampling`` builds a sampler from a
search configuration.

``SurrogateSampler`` also works in any Optuna study, on a user's own objective; its
space-specific part is a strategy object (``OptunaSpaceStrategy``, ``NASStrategy``, or one's
own ``BaseSpaceStrategy``).
"""

from optnas.samplers.strategies import BaseSpaceStrategy, NASStrategy, OptunaSpaceStrategy
from optnas.samplers.surrogate import SurrogateSampler

__all__ = ["BaseSpaceStrategy", "NASStrategy", "OptunaSpaceStrategy", "SurrogateSampler"]
