"""Running int8 TFLite flatbuffers in TensorFlow Lite for Microcontrollers' own interpreter.

The ``tflite-micro`` package (an extra: ``pip install 'optnas[tflite]'``) holds TFLM's interpreter
with its reference kernels, the same code as on a microcontroller. :class:`TFLMRunner` runs a
flatbuffer on float images one at a time (TFLM's batch is one): each image is quantized with
the input's scale and zero point, and the int8 outputs are dequantized. :func:`arena_use`
reports the arena that TFLM's recording allocator used (``print_allocations``, which C++ writes
to file descriptor 2) and :func:`smallest_arena` the smallest arena a device must give it,
both measured in a fresh process: a process that went on after a failed allocation crashed
here.
"""

from __future__ import annotations

import importlib
import multiprocessing
import re
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from types import ModuleType

import numpy as np

# Enough for every network of the space up to r=224; TFLM reports what it used, not this.
MEASURE_ARENA_BYTES = 64 << 20
# Above the smallest arena that works: the arena's start is aligned inside the buffer, which
# may sit elsewhere in another process.
ARENA_MARGIN_BYTES = 1024
# Workers are forked on Linux: spawned ones would import the caller's main module again, which a
# script without a main guard cannot bear. They only run numpy and TFLM, never the torch thread
# pools a fork may inherit in a broken state (as PyTorch's DataLoader workers do).
_START_METHOD = "fork" if sys.platform == "linux" else "spawn"
_ALLOCATION = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
# Run in a fresh process, fed the flatbuffer on stdin. "use ARENA": build and invoke the model
# once, then print_allocations (C++, to file descriptor 2). "smallest TOTAL": the smallest
# arena_size, to 16 bytes, with which the model builds and invokes, each try in a forked child:
# a process that goes on after a failed allocation crashed here.
_MEASURE = """
import os
import sys

import numpy as np
from tflite_micro import runtime

model = sys.stdin.buffer.read()


def run(arena_size):
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(details["shape"], details["dtype"]), 0)
    interpreter.invoke()
    return interpreter


def fits(arena_size):
    pid = os.fork()
    if pid == 0:
        silent = os.open(os.devnull, os.O_WRONLY)
        os.dup2(silent, 1)
        os.dup2(silent, 2)
        try:
            run(arena_size)
        except BaseException:
            os._exit(1)
        os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


if sys.argv[1] == "use":
    run(int(sys.argv[2])).print_allocations()
else:
    low = high = int(sys.argv[2])
    while not fits(high):
        low, high = high, high + max(1024, 2 * (high - low))
    while high - low > 16:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    print(f"smallest arena {high}")
"""


class TFLiteMicroMissingError(ValueError):
    """The ``tflite-micro`` package is not installed."""


def import_tflite_micro(module: str = "") -> ModuleType:
    """Import ``tflite_micro`` (or one of its modules), with a one-line error telling how to install it.

    Args:
        module: a module inside the package, e.g. ``tensorflow.lite.micro.python.schema_py_generated``;
            empty for the package.

    Raises:
        TFLiteMicroMissingError: tflite-micro or flatbuffers is not installed.
    """
    try:
        importlib.import_module("flatbuffers")
        return importlib.import_module("tflite_micro" + (f".{module}" if module else ""))
    except ImportError as error:
        raise TFLiteMicroMissingError(f"TFLite export needs {error.name or 'tflite-micro'}: "
                                      "pip install 'optnas[tflite]'") from None


def arena_use(flatbuffer: bytes, *, timeout: float = 300.0) -> tuple[int, int, int]:
    """Return the TFLM arena a flatbuffer uses: ``(total, head, tail)`` bytes.

    ``head`` holds the activations, planned by TFLM's greedy memory planner (and kernels'
    scratch buffers); ``tail`` the persistent data (per-channel requantization, tensor and
    node structures); ``total`` is their sum, as TFLM's recording allocator prints it. The
    interpreter is built and invoked once on a zero image in a fresh Python process with a
    64 MiB arena. Building may briefly need more (see :func:`smallest_arena`).

    Args:
        flatbuffer: the ``.tflite`` bytes.
        timeout: seconds the measuring process may take.

    Raises:
        TFLiteMicroMissingError: tflite-micro is not installed.
        ValueError: TFLM could not build or run the model (its last error line).
    """
    found = dict(_ALLOCATION.findall(_measure(flatbuffer, ["use", str(MEASURE_ARENA_BYTES)], timeout)))
    if len(found) != 3:
        raise ValueError("TFLite Micro printed no arena allocation")
    return int(found["total"]), int(found["head"]), int(found["tail"])


def smallest_arena(flatbuffer: bytes, *, timeout: float = 300.0) -> int:
    """Return the smallest ``arena_size`` (to 16 bytes) with which TFLM builds and runs a flatbuffer.

    It is :func:`arena_use`'s total, or more when building needs temporary memory beyond the
    final plan (e.g. the memory planner's own scratch, or a layer's int32 zero points, for
    networks whose activations are small). Bisected in a fresh process, each try in a forked
    child (POSIX only).

    Args:
        flatbuffer: the ``.tflite`` bytes.
        timeout: seconds the measuring process may take.

    Raises:
        TFLiteMicroMissingError: tflite-micro is not installed.
        ValueError: TFLM could not build or run the model.
    """
    total = arena_use(flatbuffer, timeout=timeout)[0]
    found = re.search(r"smallest arena (\d+)", _measure(flatbuffer, ["smallest", str(total)], timeout))
    if found is None:
        raise ValueError("TFLite Micro's smallest arena was not found")
    return int(found.group(1))


def _measure(flatbuffer: bytes, arguments: list[str], timeout: float) -> str:
    """Run the measuring script in a fresh process; return what it printed (stderr, then stdout)."""
    import_tflite_micro()
    result = subprocess.run([sys.executable, "-c", _MEASURE, *arguments], input=flatbuffer, capture_output=True,
                            timeout=timeout, check=False)
    printed = result.stderr.decode(errors="replace") + result.stdout.decode(errors="replace")
    if result.returncode != 0:
        lines = [line for line in printed.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        raise ValueError(f"TFLite Micro could not run the model: {reason}")
    return printed


class TFLMRunner:
    """A flatbuffer loaded in TFLM's interpreter, run on float NCHW images one by one.

    With ``processes`` > 1, that many fresh processes each load the model once and run a
    share of every call's images (TFLM itself runs one image at a time, on one core). Close
    the runner (or use it in a ``with`` block) to stop them.

    Args:
        flatbuffer: an int8 ``.tflite`` whose one input is ``[1, r, r, 3]`` int8 (NHWC) and
            whose one output is int8.
        arena_size: the tensor arena's bytes [default: :func:`smallest_arena` plus a margin,
            measured in a fresh process first, so that a too small arena cannot crash this one].
        processes: worker processes; 1 runs the model in this process.

    Raises:
        TFLiteMicroMissingError: tflite-micro is not installed.
    """

    def __init__(self, flatbuffer: bytes, arena_size: int | None = None, processes: int = 1) -> None:
        import_tflite_micro()
        if arena_size is None:
            arena_size = smallest_arena(flatbuffer) + ARENA_MARGIN_BYTES
        self._pool: ProcessPoolExecutor | None = None
        self._model: _Model | None = None
        if processes > 1:
            self._pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context(_START_METHOD),
                                             initializer=_load_worker, initargs=(flatbuffer, arena_size))
            self._processes = processes
        else:
            self._model = _Model(flatbuffer, arena_size)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Run every image and return the output dequantized, stacked over the images.

        Args:
            images: N×3×r×r float32 normalised images.

        Returns:
            N×... float32 (N×classes for a classifier), in the images' order.
        """
        images = np.asarray(images, np.float32)
        if self._pool is None:
            return self._model(images)
        shares = [share for share in np.array_split(images, self._processes) if len(share)]
        return np.concatenate(list(self._pool.map(_run_worker, shares)))

    def close(self) -> None:
        """Stop the worker processes, if any."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> TFLMRunner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Model:
    """The model in this process's TFLM interpreter: quantize, invoke image by image, dequantize."""

    def __init__(self, flatbuffer: bytes, arena_size: int) -> None:
        self.interpreter = import_tflite_micro().runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena_size)
        details = self.interpreter.get_input_details(0)
        self.input_shape = tuple(int(size) for size in details["shape"])
        self.input_scale, self.input_zero_point = _params(details)
        self.output_scale, self.output_zero_point = _params(self.interpreter.get_output_details(0))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        quantized = np.clip(np.round(images.transpose(0, 2, 3, 1) / self.input_scale) + self.input_zero_point,
                            -128, 127).astype(np.int8)
        outputs = []
        for image in quantized:
            self.interpreter.set_input(image.reshape(self.input_shape), 0)
            self.interpreter.invoke()
            outputs.append(self.interpreter.get_output(0)[0].astype(np.float32))
        return (np.stack(outputs) - self.output_zero_point) * self.output_scale


_worker_model: _Model | None = None


def _load_worker(flatbuffer: bytes, arena_size: int) -> None:
    global _worker_model  # one model per worker process, loaded once
    _worker_model = _Model(flatbuffer, arena_size)


def _run_worker(images: np.ndarray) -> np.ndarray:
    return _worker_model(images)


def _params(details: dict) -> tuple[float, int]:
    """A tensor's (scale, zero point) from the interpreter's details."""
    quantization = details["quantization_parameters"]
    return float(quantization["scales"][0]), int(quantization["zero_points"][0])
