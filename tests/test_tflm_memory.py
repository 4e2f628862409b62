"""TFLM's arena and the .tflite size from the encoding, against TFLite Micro running optnas's own files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from optnas.networks.memory import KB
from optnas.networks.tflm_memory import (
    Buffer,
    graph_plan,
    greedy_arena,
    tflm_memory,
    tflm_memory_vectors,
)
from optnas.spaces import MobileNetV3Space
from optnas.spaces.mobilenetv3 import WIDTH_MULTS

# Tiny networks, low resolutions: an even side (PAD before the stem), an odd one (SAME padding
# everywhere) and a narrow width (no feature mix) at r=16, where TFLM's working data (5.8 KB
# more) outgrows the small plan.
CASES = [({"ks": [3, 5, 7, 3] * 5, "e": [3, 4, 6, 3] * 5, "d": [2, 3, 2, 2, 2], "w": 1.0}, 24),
         ({"ks": [7, 3, 5, 3] * 5, "e": [6, 3, 4, 3] * 5, "d": [2, 2, 3, 2, 4], "w": 1.0}, 17),
         ({"ks": [5, 3, 3, 7] * 5, "e": [4, 6, 3, 3] * 5, "d": [3, 2, 2, 2, 2], "w": min(WIDTH_MULTS)}, 16)]
N_CLASSES = 10
# Reached on the benchmark's held-out networks (benchmarks/README.md): the head exactly, the tail
# within the alignment of its allocations, the file within the alignment of its buffers.
TAIL_TOLERANCE_BYTES = 64
FILE_TOLERANCE = 0.003
# The smallest arena that runs is within this of the predicted one.
ARENA_TOLERANCE_BYTES = 512
_RUNS = """
import sys
import numpy as np
from tflite_micro import runtime
interpreter = runtime.Interpreter.from_bytes(sys.stdin.buffer.read(), arena_size=int(sys.argv[1]))
interpreter.set_input(np.zeros(interpreter.get_input_details(0)["shape"], np.int8), 0)
interpreter.invoke()
"""


def test_the_planner_lays_out_buffers_as_tflms_own_test_expects() -> None:
    # greedy_memory_planner_test.cc, TestGreedyMedium: 90 bytes, where at most 80 are alive at once.
    assert greedy_arena([Buffer(10, 0, 1), Buffer(20, 1, 2), Buffer(30, 2, 3), Buffer(40, 3, 4),
                         Buffer(50, 0, 1)]) == 90
    # TestOverlapCase: 120.
    assert greedy_arena([Buffer(100, 0, 1), Buffer(50, 2, 3), Buffer(20, 1, 2)]) == 120


def test_the_vectorised_form_equals_the_model() -> None:
    space = MobileNetV3Space(resolutions=range(8, 161, 3), search_width=True)
    subnets = space.sample(np.random.default_rng(0), 300)
    vectors = tflm_memory_vectors(space, N_CLASSES)(np.array([space.to_vector(subnet) for subnet in subnets]))
    for index, subnet in enumerate(subnets):
        expected = tflm_memory(subnet, N_CLASSES)
        assert {name: vectors[name][index] for name in expected} == pytest.approx(expected, abs=1e-9)
    # The smallest networks' arena is TFLM's working data, not the plan: both cases occur.
    assert (vectors["arena_kb"] > vectors["arena_head_kb"] + vectors["arena_tail_kb"]).any()
    assert (vectors["arena_kb"] == vectors["arena_head_kb"] + vectors["arena_tail_kb"]).any()


@pytest.fixture(scope="module")
def converted() -> list[tuple[dict, bytes, list[str]]]:
    pytest.importorskip("tflite_micro", reason="tflite-micro is not installed (pip install 'optnas[tflite]')")
    from optnas.networks.standalone import build_network
    from optnas.networks.supernet import build_supernet
    from optnas.networks.tflite import convert_int8

    torch.manual_seed(0)
    result = []
    for genes, resolution in CASES:
        subnet = MobileNetV3Space(width_mult=genes["w"], resolutions=[resolution]).canonical(
            {**genes, "r": resolution})
        network = build_network(subnet, N_CLASSES, build_supernet(N_CLASSES, genes["w"])).eval()
        model = convert_int8(network, torch.rand(2, 3, resolution, resolution) * 2 - 1)
        result.append((subnet, model.flatbuffer, list(model.ops)))
    return result


def _runs(flatbuffer: bytes, arena_size: int) -> bool:
    """Whether TFLM builds and invokes the model in an arena of that size (in a fresh process: a failed
    allocation can crash the one it happened in)."""
    return subprocess.run([sys.executable, "-c", _RUNS, str(arena_size)], input=flatbuffer, capture_output=True,
                          timeout=120, check=False).returncode == 0


def test_the_model_predicts_what_tflm_allocates_for_the_converted_file(converted) -> None:
    from optnas.networks.tflm import arena_use

    for subnet, flatbuffer, ops in converted:
        assert [operator.code for operator in graph_plan(subnet, N_CLASSES).operators] == ops
        predicted = tflm_memory(subnet, N_CLASSES)
        _, head, tail = arena_use(flatbuffer)
        assert predicted["arena_head_kb"] * KB == head
        assert abs(predicted["arena_tail_kb"] * KB - tail) <= TAIL_TOLERANCE_BYTES
        assert predicted["tflite_kb"] * KB == pytest.approx(len(flatbuffer), rel=FILE_TOLERANCE)
        # The predicted arena is enough, and little more than enough.
        arena = round(predicted["arena_kb"] * KB)
        assert _runs(flatbuffer, arena + TAIL_TOLERANCE_BYTES)
        assert not _runs(flatbuffer, arena - ARENA_TOLERANCE_BYTES)
