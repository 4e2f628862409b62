"""optnas's surrogate-assisted multi-objective sampler as an OptunaHub package.

The sampler is optnas's own class (``optnas.samplers.SurrogateSampler``), not a copy: the
package re-exports it, so optnas must be installed (see README.md, "Installation").
"""

try:
    from optnas.samplers import BaseSpaceStrategy
    from optnas.samplers import OptunaSpaceStrategy
    from optnas.samplers import SurrogateSampler
except ImportError as error:
    # optnas is not on PyPI, so `pip install -r requirements.txt` alone does not bring it.
    raise ImportError(
        "samplers/optnas_surrogate needs optnas: install it from its checkout "
        "(pip install -e <optnas checkout>)"
    ) from error


__all__ = ["BaseSpaceStrategy", "OptunaSpaceStrategy", "SurrogateSampler"]
