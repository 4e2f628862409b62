"""Latency in milliseconds on the user's own device: layer tables, end-to-end measurement, the device script.

Torch-free at import: ``python -m optnas.latency.device`` runs on a device with only numpy
and onnxruntime.
"""

# Where layers and networks are timed: onnxruntime's CPU provider, or PyTorch eager mode.
RUNTIMES = ("onnxruntime", "torch")
