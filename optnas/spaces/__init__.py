"""Search spaces: genes, Optuna distributions, the canonical ``net.subnet`` form, and what
differs per space (class attributes and hooks of :class:`SearchSpace`), found by name in
:data:`SPACES`. A canonical subnet is a :class:`Subnet`, which knows its space."""

from __future__ import annotations

from typing import Any

from optnas.spaces.base import SearchSpace, SpaceOptions, Subnet
from optnas.spaces.eemobilenetv3 import EEMobileNetV3Space
from optnas.spaces.mobilenetv3 import MobileNetV3Space
from optnas.spaces.nasbench201 import NASBench201Space

SPACES: dict[str, type[SearchSpace]] = {
    space.name: space for space in (MobileNetV3Space, NASBench201Space, EEMobileNetV3Space)
}
SPACE_NAMES = tuple(SPACES)
# The key of a `net.subnet` file that names its space (not one of the subnet's own).
SPACE_KEY = "space"


def as_subnet(subnet: Any) -> Subnet:
    """Return a subnet as a canonical :class:`Subnet` of the space it belongs to.

    A :class:`Subnet` is returned as it is. Of a JSON object, the space is the one its
    :data:`SPACE_KEY` names; an object without that key (a ``net.subnet`` file written before
    files named their space, a user's own) belongs to the space its keys show. Either way the
    space is the one of its own width and resolution (:meth:`SearchSpace.for_subnet`). This is
    the one place that tells a subnet's space from its keys.

    Args:
        subnet: a ``net.subnet`` JSON object or a :class:`Subnet`.

    Raises:
        ValueError: the subnet is not a valid subnet of any space.
    """
    if isinstance(subnet, Subnet):
        return subnet
    if not isinstance(subnet, dict):
        raise ValueError(f"a subnet is a JSON object, got {type(subnet).__name__}")
    values = dict(subnet)
    name = values.pop(SPACE_KEY, None)
    if name is None:
        name = "nasbench201" if "ops" in values else "eemobilenetv3" if "exits" in values else "mobilenetv3"
    if not isinstance(name, str) or name not in SPACES:
        raise ValueError(f"unknown space {name!r} in the subnet's {SPACE_KEY!r}; known: {list(SPACES)}")
    try:
        return SPACES[name].for_subnet(values).canonical(values)
    except TypeError as error:
        # A value of the wrong type where a space is built from it (e.g. "w": null).
        raise ValueError(str(error)) from None


__all__ = [
    "SPACES", "SPACE_KEY", "SPACE_NAMES", "EEMobileNetV3Space", "MobileNetV3Space", "NASBench201Space",
    "SearchSpace", "SpaceOptions", "Subnet", "as_subnet",
]
