"""The user attributes a search stores on every trial: the protocol its readers share.

The objective writes them; the surrogate sampler, ``optnas trials``/``select``/``report`` and
optuna-dashboard read them. Figures are in the units of :mod:`optnas.networks.costs`
(millions), ``top1`` in %, latencies in milliseconds and memory in KB (1024 bytes): each
figure's record in :data:`optnas.figures.FIGURES`.
"""

from optnas.figures import STORED

SUBNET = "subnet"
DUPLICATE_OF = "duplicate_of"
FEASIBLE = "feasible"
FAIL_REASON = "fail_reason"
FAIL_TRACEBACK = "fail_traceback"

# Every figure a trial may store besides its subnet, in the order of ``net.stats``; a trial
# holds those its search measures (exits, robustness) and a duplicate copies them.
STAT_KEYS = STORED
