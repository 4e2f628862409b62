"""Search spaces: genes, Optuna distributions and the canonical ``net.subnet`` form."""

from optnas.spaces.base import SearchSpace
from optnas.spaces.eemobilenetv3 import EEMobileNetV3Space
from optnas.spaces.mobilenetv3 import MobileNetV3Space
from optnas.spaces.nasbench201 import NASBench201Space

SPACE_NAMES = ("mobilenetv3", "nasbench201", "eemobilenetv3")

__all__ = ["SPACE_NAMES", "EEMobileNetV3Space", "MobileNetV3Space", "NASBench201Space", "SearchSpace"]
