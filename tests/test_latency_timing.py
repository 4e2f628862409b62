"""Latency timing: the interleaved timing protocol, the layer folder, the device script, whole networks.

Timings are machine-dependent: the tests check what the protocol guarantees (fields, order of
calls, stop rules) with a fake clock, and only positivity and ordering of real timings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from optnas.latency.device import Call, TimingProtocol, fit_overhead, time_calls


class FakeClock:
    """A clock that advances only when a fake item runs, by the durations the test gives it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.log: list[str] = []

    def __call__(self) -> float:
        return self.now

    def item(self, name: str, durations: Iterator[float]) -> Call:
        def call() -> None:
            self.log.append(name)
            self.now += next(durations)
        return call


def _constant(seconds: float) -> Iterator[float]:
    while True:
        yield seconds


def _rising(start: float) -> Iterator[float]:
    seconds = start
    while True:
        yield seconds
        seconds += start


def test_stable_items_are_interleaved_and_stop_at_min_repeats() -> None:
    clock = FakeClock()
    protocol = TimingProtocol(warmup=2, min_repeats=10, max_repeats=100, round_size=5)
    result = time_calls({"a": clock.item("a", _constant(0.001)), "b": clock.item("b", _constant(0.002))},
                        protocol, clock=clock)
    assert result == {"a": {"ms": pytest.approx(1.0), "p90_ms": pytest.approx(1.0), "repeats": 10},
                      "b": {"ms": pytest.approx(2.0), "p90_ms": pytest.approx(2.0), "repeats": 10}}
    # Round-robin from the first warm-up call to the last timed one.
    assert clock.log == ["a", "b"] * (2 + 10)


def test_an_unstable_item_runs_on_alone_until_max_repeats() -> None:
    clock = FakeClock()
    protocol = TimingProtocol(warmup=1, min_repeats=10, max_repeats=40, round_size=5, tolerance=0.02)
    # Each call of "drift" is slower than the last: its median never settles.
    result = time_calls({"steady": clock.item("steady", _constant(0.001)), "drift": clock.item("drift", _rising(0.001))},
                        protocol, clock=clock)
    assert result["steady"]["repeats"] == 10
    assert result["drift"]["repeats"] == 40
    assert result["drift"]["p90_ms"] > result["drift"]["ms"]
    assert clock.log == ["steady", "drift"] * 11 + ["drift"] * 30


def test_the_time_cap_stops_a_slow_item_after_its_first_round() -> None:
    clock = FakeClock()
    protocol = TimingProtocol(warmup=0, min_repeats=10, max_repeats=100, round_size=4, max_seconds=3.0)
    result = time_calls({"slow": clock.item("slow", _constant(1.0))}, protocol, clock=clock)
    assert result["slow"] == {"ms": pytest.approx(1000.0), "p90_ms": pytest.approx(1000.0), "repeats": 4}


def test_real_calls_give_ordered_positive_figures() -> None:
    result = time_calls({"sleep": lambda: time.sleep(0.001), "noop": lambda: None},
                        TimingProtocol(warmup=1, min_repeats=5, max_repeats=50))
    assert result["sleep"]["ms"] >= 1.0
    for timing in result.values():
        assert 0 <= timing["ms"] <= timing["p90_ms"]
        assert 5 <= timing["repeats"] <= 50


@pytest.mark.parametrize("fields", [{"min_repeats": 20, "max_repeats": 10}, {"round_size": 0},
                                    {"max_seconds": 0.0}, {"tolerance": -0.1}])
def test_an_impossible_protocol_is_refused(fields: dict) -> None:
    with pytest.raises(ValueError, match="invalid timing protocol"):
        TimingProtocol(**fields)


def test_the_overhead_is_the_median_gap() -> None:
    assert fit_overhead([1.0, 2.0, 3.0], [1.5, 2.5, 13.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        fit_overhead([], [])
