"""Search spaces: genes, Optuna distributions, the canonical ``net.subnet`` form, and what
differs per space (class attributes and hooks of :class:`SearchSpace`), found by name in
:data:`SPACES`."""

from optnas.spaces.base import SearchSpace, SpaceOptions
from optnas.spaces.eemobilenetv3 import EEMobileNetV3Space
from optnas.spaces.mobilenetv3 import MobileNetV3Space
from optnas.spaces.nasbench201 import NASBench201Space

SPACES: dict[str, type[SearchSpace]] = {
    space.name: space for space in (MobileNetV3Space, NASBench201Space, EEMobileNetV3Space)
}
SPACE_NAMES = tuple(SPACES)

__all__ = ["SPACES", "SPACE_NAMES", "EEMobileNetV3Space", "MobileNetV3Space", "NASBench201Space", "SearchSpace",
           "SpaceOptions"]
