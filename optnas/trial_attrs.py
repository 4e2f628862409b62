"""The user attributes a search stores on every trial: the protocol its readers share.

The objective writes them; the surrogate sampler, ``optnas trials``/``select``/``report`` and
optuna-dashboard read them. Figures are in the units of :mod:`optnas.networks.costs`
(millions), ``top1`` in %, latencies in milliseconds and memory in KB (1024 bytes).
"""

SUBNET = "subnet"
DUPLICATE_OF = "duplicate_of"
FEASIBLE = "feasible"
FAIL_REASON = "fail_reason"
FAIL_TRACEBACK = "fail_traceback"

# Every figure a trial may store besides its subnet, in the order of ``net.stats``; a trial
# holds those its search measures (exits, robustness) and a duplicate copies them. With
# ``--int8``, ``top1`` is the int8 network's and ``top1_float`` the float one's.
STAT_KEYS = ("top1", "top1_float", "params", "macs", "activations", "peak_activations", "tiny_ml", "robustness",
             "top1_robust", "alpha_norm", "avg_macs", "exit_ratios", "exit_top1", "exit_macs", "epsilon",
             "latency", "latency_p90", "avg_latency", "exit_latency", "flash_kb", "sram_kb", "flash_kb_float32",
             "sram_kb_float32")
