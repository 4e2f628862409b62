"""Search spaces: genes, Optuna distributions and the canonical ``net.subnet`` form."""

from optnas.spaces.base import SearchSpace
from optnas.spaces.mobilenetv3 import MobileNetV3Space
from optnas.spaces.nasbench201 import NASBench201Space

SPACE_NAMES = ("mobilenetv3", "nasbench201")

__all__ = ["SPACE_NAMES", "MobileNetV3Space", "NASBench201Space", "SearchSpace"]
