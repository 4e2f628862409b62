"""The device script: times a layer folder with onnxruntime and writes its latency table.

It runs where the networks will run, with nothing but Python, numpy and onnxruntime
(optnas and PyTorch need not be installed; the folder carries a copy of this file)::

    python -m optnas.latency.device DIR --out lut.json [--threads N]
    python DIR/device.py DIR --out lut.json [--threads N]

``DIR`` is a layer folder from ``optnas latency layers``: ``manifest.json``, one ONNX file per
layer (``layers/``), a few whole networks (``calibration/``) and a trivial model
(``call_overhead.onnx``). The table (``lut.json``, read by
:class:`optnas.latency.table.LatencyTable`) holds each layer's median time minus the cost of
one session call (``call_overhead_ms``, timed on the trivial model: a whole network pays it
once, not once per layer) and the ``overhead_ms`` fitted on the calibration networks timed
end to end. A run that is interrupted resumes where it stopped: the table is written after
every chunk of layers and only the missing entries are timed.

This module also holds the one timing protocol (:func:`time_calls`) and the table assembly
(:func:`time_table`) that PyTorch timing shares. Exit codes: 0 success, 1 runtime failure,
2 unusable folder, manifest or table file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

# typing's aliases, not collections.abc's: devices run Pythons as old as 3.8 (JetPack 5), where
# the latter cannot be subscripted at run time.
from typing import Any, Callable, Mapping, Sequence  # noqa: UP035

import numpy as np

TABLE_FORMAT = "optnas-latency-table/1"
MANIFEST_FORMAT = "optnas-latency-layers/1"
MANIFEST_FILE = "manifest.json"
# Layers timed together and then saved: what an interrupted run loses at most, and how many
# sessions are open at once.
CHUNK = 32
# The table fields a resumed run must share with the file it continues: entries timed
# under other conditions would be mixed into one table.
_SAME_CONDITIONS = ("format", "runtime", "runtime_version", "threads", "device", "n_classes")
_MANIFEST_FIELDS = ("n_classes", "widths", "resolutions", "exits", "layers", "calibration", "call_overhead")
# onnxruntime input types the script can feed random data to.
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}

Call = Callable[[], object]
# Makes a call to time when its turn comes, so sessions and modules are loaded a chunk at a time.
MakeCall = Callable[[], Call]
# Called with a stage name ("layers", "calibration"), the items done and the total.
Progress = Callable[[str, int, int], None]


class FolderError(ValueError):
    """A layer folder, manifest or table file that cannot be used; the message is one line."""


@dataclass(frozen=True)
class TimingProtocol:
    """How :func:`time_calls` times items.

    Args:
        warmup: untimed calls of each item first (allocations, lazy initialisation, caches).
        min_repeats: timed calls of each item before it may stop as stable.
        max_repeats: timed calls after which an item stops anyway.
        round_size: timed calls of each item per round; the stop rules are checked after each round.
        tolerance: an item is stable when its median moved by less than this fraction over the
            last round.
        max_seconds: an item stops once its timed calls add up to this many seconds.
    """

    warmup: int = 3
    min_repeats: int = 10
    max_repeats: int = 500
    round_size: int = 5
    tolerance: float = 0.02
    max_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.round_size < 1 or not 1 <= self.min_repeats <= self.max_repeats:
            raise ValueError(f"invalid timing protocol {self}: need warmup >= 0, round_size >= 1, "
                             "1 <= min_repeats <= max_repeats")
        if self.tolerance < 0 or self.max_seconds <= 0:
            raise ValueError(f"invalid timing protocol {self}: need tolerance >= 0, max_seconds > 0")

    def done(self, samples: Sequence[float]) -> bool:
        """Whether an item timed ``samples`` (seconds, in order) has been timed enough."""
        count = len(samples)
        if count >= self.max_repeats or sum(samples) >= self.max_seconds:
            return True
        if count < self.min_repeats or count <= self.round_size:
            return False
        before = statistics.median(samples[: -self.round_size])
        return abs(statistics.median(samples) - before) <= self.tolerance * before


def time_calls(
    calls: Mapping[str, Call],
    protocol: TimingProtocol | None = None,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict[str, Any]]:
    """Time several items together: warm-up, then rounds that call each item in turn.

    The calls are interleaved (round-robin), so a slow moment of the machine hits every item
    alike instead of one; each item leaves the rounds when ``protocol`` says it is done.

    Args:
        calls: what to time, by name; each call runs its item once.
        protocol: warm-up, repeats, stop rules [default: :class:`TimingProtocol`'s].
        clock: seconds, monotonic.

    Returns:
        Per name: ``ms`` (median), ``p90_ms`` (90th percentile) and ``repeats`` (timed calls).
    """
    protocol = protocol or TimingProtocol()
    for _ in range(protocol.warmup):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    active = list(calls)
    while active:
        for _ in range(protocol.round_size):
            for name in active:
                start = clock()
                calls[name]()
                samples[name].append(clock() - start)
        active = [name for name in active if not protocol.done(samples[name])]
    return {
        name: {"ms": 1e3 * statistics.median(times), "p90_ms": 1e3 * float(np.percentile(times, 90)),
               "repeats": len(times)}
        for name, times in samples.items()
    }


def fit_overhead(layer_sums: Sequence[float], measured: Sequence[float]) -> float:
    """Return the overhead that, added to the layers' sum, best predicts whole-network times.

    The median of ``measured - sum``: one slow or fast measurement does not move it.

    Args:
        layer_sums: the sum of the layer entries of each calibration network (ms).
        measured: each calibration network's measured latency (ms).
    """
    if not layer_sums or len(layer_sums) != len(measured):
        raise ValueError("the overhead needs one or more networks, each with a layer sum and a measurement")
    return float(statistics.median(m - s for s, m in zip(layer_sums, measured)))


def host() -> dict[str, str]:
    """Return what the table records about the machine: CPU, platform, Python and numpy versions."""
    return {"device": _cpu_name(), "machine": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__}


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    # x86 and most ARM kernels give "model name"; a Raspberry Pi names its board in "Model".
    for field in ("model name", "Model", "Hardware"):
        for line in lines:
            name, _, value = line.partition(":")
            if name.strip() == field and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def save_json(path: str | Path, content: Any) -> None:
    """Write a JSON file atomically: an interrupted write leaves the previous file whole.

    Args:
        path: the file.
        content: JSON-serialisable content.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(content, file, indent=1)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def time_table(
    out: str | Path,
    header: Mapping[str, Any],
    layers: Mapping[str, MakeCall],
    calibration: Sequence[Mapping[str, Any]],
    call_overhead: MakeCall,
    *,
    protocol: TimingProtocol | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Time what the table file lacks and write it (the runtime-independent part of a table build).

    First the per-call overhead (unless the file has it), then the missing layers a chunk at a
    time, saving after each chunk, then the calibration networks the file has not measured,
    each interleaved with its own layers so that its ``measured_ms`` and ``layers_ms`` come
    from one window of the machine's load; finally ``overhead_ms`` is fitted on them (with
    no calibration network it is the call overhead: a whole network is one call).

    Args:
        out: the table file; an existing one is continued if timed under the same conditions.
        header: ``runtime``, ``runtime_version``, ``threads``, ``n_classes``, ``widths``,
            ``resolutions``, ``exits``; the host's description is added.
        layers: by table key, what makes each layer's timed call.
        calibration: ``name``, ``keys`` (the network's layer keys) and ``make`` (its call) per network.
        call_overhead: makes the call of a trivial model.
        protocol: the timing protocol.
        progress: told how many layers and calibration networks are done.

    Returns:
        The table written.
    """
    out = Path(out)
    table = _start_table(out, {"format": TABLE_FORMAT, "unit": "ms", **header, **host()})
    table["protocol"] = asdict(protocol or TimingProtocol())
    if "call_overhead_ms" not in table:
        table["call_overhead_ms"] = time_calls({"call": call_overhead()}, protocol)["call"]["ms"]
    entries = table["layers"]
    for network in calibration:
        absent = [key for key in network["keys"] if key not in layers and key not in entries]
        if absent:
            raise FolderError(f"calibration network {network['name']} runs layer {absent[0]}, which is not timed")
    missing = [key for key in layers if key not in entries]
    for start in range(0, len(missing), CHUNK):
        timings = time_calls({key: layers[key]() for key in missing[start : start + CHUNK]}, protocol)
        for key, timing in timings.items():
            # A layer's session call paid the call overhead, which a whole network pays once.
            entries[key] = {"ms": max(0.0, timing["ms"] - table["call_overhead_ms"]),
                            "p90_ms": max(0.0, timing["p90_ms"] - table["call_overhead_ms"]),
                            "repeats": timing["repeats"]}
        table["date"] = _now()
        save_json(out, table)
        if progress:
            progress("layers", len(layers) - len(missing) + start + len(timings), len(layers))

    known = {(record["name"], tuple(record["keys"])): record for record in table["calibration"]}
    for done, network in enumerate(calibration, start=1):
        if (network["name"], tuple(network["keys"])) not in known:
            record = _calibrate(network, layers, entries, table["call_overhead_ms"], protocol)
            known[network["name"], tuple(network["keys"])] = record
            table["calibration"] = list(known.values())
            save_json(out, table)
        if progress:
            progress("calibration", done, len(calibration))
    records = [known[network["name"], tuple(network["keys"])] for network in calibration]
    table["calibration"] = records
    table["overhead_ms"] = (fit_overhead([r["layers_ms"] for r in records], [r["measured_ms"] for r in records])
                            if records else table["call_overhead_ms"])
    table["date"] = _now()
    save_json(out, table)
    return table


# The calibration window's name for the whole network (layer keys never contain spaces).
_WHOLE_NETWORK = "whole network"


def _calibrate(network: Mapping[str, Any], layers: Mapping[str, MakeCall], entries: Mapping[str, Any],
               call_overhead_ms: float, protocol: TimingProtocol | None) -> dict[str, Any]:
    """Time a whole network interleaved with its own layers, so both are timed under the same load.

    The table's layer entries may date from minutes earlier, when the machine was busier or
    quieter; the overhead is the difference between a network and its layers, so both sides
    of each difference are timed in one window. A layer the run cannot time again keeps its entry.
    """
    calls = {_WHOLE_NETWORK: network["make"]()}
    calls.update({key: layers[key]() for key in dict.fromkeys(network["keys"]) if key in layers})
    timings = time_calls(calls, protocol)
    layers_ms = sum(max(0.0, timings[key]["ms"] - call_overhead_ms) if key in timings else entries[key]["ms"]
                    for key in network["keys"])
    return {"name": network["name"], "keys": list(network["keys"]), "measured_ms": timings[_WHOLE_NETWORK]["ms"],
            "layers_ms": layers_ms}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _start_table(out: Path, header: dict[str, Any]) -> dict[str, Any]:
    """A fresh table, or the file's when it was timed under the same conditions."""
    fresh = {**header, "date": _now(), "layers": {}, "calibration": []}
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        return fresh
    try:
        table = json.loads(out.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FolderError(f"{out}: exists but is not a JSON latency table ({error}); choose another --out") from None
    if not isinstance(table, dict) or not isinstance(table.get("layers"), dict):
        raise FolderError(f"{out}: exists but is not a latency table; choose another --out")
    differ = [field for field in _SAME_CONDITIONS if table.get(field) != header[field]]
    if differ:
        field = differ[0]
        raise FolderError(f"{out}: holds a table with {field} {table.get(field)!r}, this run has "
                          f"{header[field]!r}; choose another --out to keep both")
    # What the resumed table covers: its widths and resolutions and this run's.
    for field in ("widths", "resolutions"):
        table[field] = sorted(set(table.get(field, [])) | set(header[field]))
    table["exits"] = bool(table.get("exits")) or header["exits"]
    table.setdefault("calibration", [])
    return table


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Read and check a layer folder's manifest; every file it lists must be there.

    Args:
        folder: the layer folder.

    Raises:
        FolderError: the folder, its manifest or one of its files is missing or malformed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f"{folder}: no such layer folder (write one with `optnas latency layers`)")
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FolderError(f"{path}: no manifest; {folder} is not a layer folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FolderError(f"{path}: not a JSON manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise FolderError(f"{path}: not a layer folder manifest (format {MANIFEST_FORMAT})")
    lacking = [field for field in _MANIFEST_FIELDS if field not in manifest]
    try:
        if lacking:
            raise KeyError(lacking[0])
        files = [entry["file"] for entry in manifest["layers"].values()]
        files += [network["file"] for network in manifest["calibration"]]
        files.append(manifest["call_overhead"]["file"])
        if not all(isinstance(network["name"], str) and isinstance(network["keys"], list)
                   for network in manifest["calibration"]):
            raise TypeError("each calibration network needs a name and a list of keys")
    except (KeyError, TypeError, AttributeError) as error:
        raise FolderError(f"{path}: malformed manifest ({error!r})") from None
    absent = [name for name in files if not (folder / name).is_file()]
    if absent:
        raise FolderError(f"{folder}: {absent[0]} is missing ({len(absent)} files in all); copy the whole folder")
    return manifest


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeError("timing ONNX files needs onnxruntime: pip install onnxruntime") from None
    return onnxruntime


def onnx_call(model: str | Path | bytes, threads: int = 1) -> Call:
    """Return a call that runs an ONNX model once, fetching every output, on fixed random inputs.

    The session runs on the CPU provider with ``threads`` intra- and inter-op threads and
    sequential execution, so timings do not depend on how busy the machine's other cores are
    allowed to be. Dimensions without a fixed size (a batch axis) are given size 1.

    Args:
        model: an ONNX file, or its bytes.
        threads: CPU threads of the session.
    """
    onnxruntime = _onnxruntime()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model),
                                           sess_options=options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in session.get_inputs():
        if spec.type not in _DTYPES:
            raise RuntimeError(f"input {spec.name} has type {spec.type}; only float inputs can be timed")
        shape = [size if isinstance(size, int) else 1 for size in spec.shape]
        feeds[spec.name] = rng.standard_normal(shape).astype(_DTYPES[spec.type])
    return partial(session.run, None, feeds)


def time_layer_folder(
    folder: str | Path,
    out: str | Path,
    threads: int = 1,
    *,
    protocol: TimingProtocol | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Time a layer folder with onnxruntime and write (or continue) its latency table.

    Args:
        folder: the layer folder.
        out: the table file (``lut.json``).
        threads: CPU threads of every session.
        protocol: the timing protocol.
        progress: told how many layers and calibration networks are done.

    Returns:
        The table written.

    Raises:
        FolderError: an unusable folder or table file.
        RuntimeError: onnxruntime is missing.
    """
    if threads < 1:
        raise FolderError(f"--threads must be at least 1, got {threads}")
    folder = Path(folder)
    manifest = read_manifest(folder)
    onnxruntime = _onnxruntime()
    header = {"runtime": "onnxruntime", "runtime_version": onnxruntime.__version__, "threads": threads,
              **{field: manifest[field] for field in ("n_classes", "widths", "resolutions", "exits")}}
    layers = {key: partial(onnx_call, folder / entry["file"], threads) for key, entry in manifest["layers"].items()}
    calibration = [{"name": network["name"], "keys": network["keys"],
                    "make": partial(onnx_call, folder / network["file"], threads)}
                   for network in manifest["calibration"]]
    return time_table(out, header, layers, calibration,
                      partial(onnx_call, folder / manifest["call_overhead"]["file"], threads),
                      protocol=protocol, progress=progress)


def stderr_progress(stage: str, done: int, total: int) -> None:
    """Report progress as one ``done/total stage`` line on stderr.

    Args:
        stage: what is being timed.
        done: items done.
        total: items in all.
    """
    print(f"{done}/{total} {stage}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the device script; returns the exit code.

    Args:
        argv: the arguments [default: the command line's].
    """
    parser = argparse.ArgumentParser(
        prog="device.py",
        description="Time a layer folder (from `optnas latency layers`) with onnxruntime and write the "
                    "latency table of this device. Needs only numpy and onnxruntime. An existing --out "
                    "timed under the same conditions is continued.",
    )
    parser.add_argument("folder", metavar="DIR", help="the layer folder (holds manifest.json)")
    parser.add_argument("--out", default="lut.json", help="the table to write [default: lut.json]")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of onnxruntime [default: 1]")
    args = parser.parse_args(argv)
    try:
        table = time_layer_folder(args.folder, args.out, args.threads, progress=stderr_progress)
    except FolderError as error:
        print(f"device.py: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - onnxruntime's own errors are plain Exceptions
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"device.py: error: {message}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {len(table['layers'])} layers on {table['device']}, "
          f"overhead {table['overhead_ms']:.3f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
