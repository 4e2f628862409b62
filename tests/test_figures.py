"""The figures' records, and what the options, the constraints and the checks derive from them."""

from __future__ import annotations

import dataclasses

import pytest

from optnas import figures
from optnas.config import SearchConfig
from optnas.evaluation.costs import exact_costs
from optnas.figures import FIGURES, bounded_figure
from optnas.objectives.figures import constraint_values
from optnas.spaces import SPACE_NAMES, SPACES
from optnas.trial_attrs import STAT_KEYS

BOUND_FIELDS = [field.name for field in dataclasses.fields(SearchConfig) if field.name in figures.BOUNDS]


def test_stored_keys_keep_their_order() -> None:
    # Studies, net.stats files and CSV columns list them so: a new figure goes last.
    assert STAT_KEYS == (
        "top1", "top1_float", "params", "macs", "activations", "peak_activations", "tiny_ml", "robustness",
        "top1_robust", "alpha_norm", "avg_macs", "exit_ratios", "exit_top1", "exit_macs", "epsilon", "latency",
        "latency_p90", "avg_latency", "exit_latency", "flash_kb", "sram_kb", "flash_kb_float32", "sram_kb_float32",
        "arena_kb", "arena_head_kb", "arena_tail_kb", "tflite_kb",
    )


def test_the_options_list_the_objectives_as_before() -> None:
    assert figures.FIRST_OBJECTIVES == ("top1", "top1_robust")
    assert figures.SECOND_OBJECTIVES == ("params", "macs", "activations", "tiny_ml", "avg_macs", "latency",
                                         "avg_latency", "flash_kb", "sram_kb", "arena_kb", "tflite_kb", "top1_robust")
    assert figures.SUMMARY == ("top1", "params", "macs", "activations", "tiny_ml", "avg_macs", "latency",
                               "avg_latency", "measured_latency", "flash_kb", "sram_kb", "arena_kb", "tflite_kb",
                               "top1_robust")
    assert BOUND_FIELDS == ["pmax", "mmax", "amax", "lmax", "flash_max", "sram_max", "arena_max", "tflite_max",
                            "top1min"]


@pytest.mark.parametrize("figure", FIGURES.values(), ids=list(FIGURES))
def test_every_record_is_coherent(figure: figures.Figure) -> None:
    assert figure.unit in ("%", "M", "ms", "KB", None)
    assert figure.source in figures.SOURCES
    assert figure.spaces and set(figure.spaces) <= set(SPACE_NAMES)
    assert set(figure.bounded_in or ()) <= set(figure.spaces)
    if figure.first_objective or figure.second_objective or figure.bound:
        assert figure.direction in (figures.MINIMIZE, figures.MAXIMIZE)
    if figure.second_objective:
        # --sec-obj is minimised.
        assert figure.direction == figures.MINIMIZE
        assert isinstance(figure.reference, float) or figure.reference in figures.REFERENCE_RULES
    if figure.bound is not None:
        assert figure.bound in BOUND_FIELDS
    if figure.per_exit is not None:
        assert FIGURES[figure.per_exit].stored and figure.reference == "last_exit"


def test_the_exact_figures_are_those_the_cost_model_gives() -> None:
    config = SearchConfig().validate()
    exact = {name for name, figure in FIGURES.items() if figure.source == "exact" and "mobilenetv3" in figure.spaces}
    assert set(exact_costs(config.cost_options(), config.make_space().smallest())) == exact
    config = SearchConfig(search_space="eemobilenetv3").validate()
    known = {name for name, figure in FIGURES.items() if "eemobilenetv3" in figure.spaces}
    assert set(exact_costs(config.cost_options(), config.make_space().smallest())) <= known


def _options(space: str, **values: object) -> dict[str, object]:
    options: dict[str, object] = {"search_space": space, "sec_obj": "none", **values}
    if space == "nasbench201":
        options["dataset"] = "cifar10"
    elif "latency" in str(values.get("sec_obj")) or "lmax" in values:
        options["latency_table"] = "lut.json"  # read later, by the pre-flight check
    return options


@pytest.mark.parametrize("space", SPACE_NAMES)
@pytest.mark.parametrize("sec_obj", figures.SECOND_OBJECTIVES)
def test_a_space_takes_the_second_objectives_it_has(space: str, sec_obj: str) -> None:
    config = SearchConfig(**_options(space, sec_obj=sec_obj))
    if space in FIGURES[sec_obj].spaces:
        assert config.validate().objectives == ["top1", sec_obj]
    elif SPACES[space].trains_networks:
        with pytest.raises(ValueError, match=f"^sec_obj {sec_obj} needs search_space "):
            config.validate()
    else:
        with pytest.raises(ValueError, match=f"^search_space {space} supports sec_obj params, latency or none$"):
            config.validate()


@pytest.mark.parametrize("space", SPACE_NAMES)
@pytest.mark.parametrize("option", BOUND_FIELDS)
def test_a_space_takes_the_bounds_on_figures_it_has(space: str, option: str) -> None:
    config = SearchConfig(**_options(space, **{option: 50.0}))
    figure = bounded_figure(option, space)
    if figure is None:
        with pytest.raises(ValueError, match=f"^search_space {space} has no figure for {option} to bound"):
            config.validate()
    else:
        assert config.validate().constraint_bounds == {figure.constraint: 50.0}


def test_mmax_bounds_the_expected_macs_of_early_exit_networks() -> None:
    assert bounded_figure("mmax", "mobilenetv3").name == "macs"
    assert bounded_figure("mmax", "eemobilenetv3").name == "avg_macs"
    assert bounded_figure("mmax", "nasbench201") is None
    assert bounded_figure("top1min", "nasbench201").constraint == "top1min"


def test_constraint_values_are_signed_by_direction() -> None:
    bounds = {"params": 2.0, "avg_macs": 5.0, "top1min": 60.0}
    stats = {"top1": 70.0, "params": 2.5, "avg_macs": 4.0}
    assert constraint_values(stats, bounds) == {"params": 0.5, "avg_macs": -1.0, "top1min": -10.0}


def test_the_help_of_sec_obj_lists_every_second_objective() -> None:
    help_text = next(f for f in dataclasses.fields(SearchConfig) if f.name == "sec_obj").metadata["help"]
    assert all(f"{name} (" in help_text or f"{name} /" in help_text or f"/ {name}" in help_text
               for name in figures.SECOND_OBJECTIVES)
