"""The package's layers: imports go one way, the order the README's "Layout" table gives,
with no cycle; the quick commands do not import torch."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import optuna
import pytest

from tests.conftest import Scenarios, SessionScenarios, selected, selected_values, start_with_session

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "optnas"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, source: str, is_package: bool = False) -> set[str]:
    """Every optnas module the module ``name`` imports, wherever the import statement sits."""
    found = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from optnas import trial_attrs` imports the module optnas.trial_attrs.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target.split(".")[0] == "optnas" and target != name)
    return {target if target in MODULES else target.rpartition(".")[0] for target in found}


GRAPH = {name: _imports(name, path.read_text(), path.name == "__init__.py") for name, path in MODULES.items()}


def _layers() -> list[list[str]]:
    """The README's layers, lowest first: the module prefixes of each row of its Layout table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if re.match(r"\|\s*\d+\s*\|", line)]
    return [re.findall(r"`([\w.]+)`", row[2]) for row in rows]


def _layer_of(module: str, layers: list[list[str]]) -> int:
    # The longest matching prefix decides: `optnas` (the package's own __init__) is a layer of
    # its own, `optnas.spaces.base` belongs to `optnas.spaces`.
    matches = [(len(prefix), index) for index, prefixes in enumerate(layers) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer of the README's Layout table"
    return max(matches)[1]


def test_every_module_is_in_a_layer_and_imports_only_its_own_or_lower_ones() -> None:
    layers = _layers()
    assert len(layers) >= 10
    against = [
        f"{module} (layer {_layer_of(module, layers) + 1}) imports {target} (layer {_layer_of(target, layers) + 1})"
        for module, targets in GRAPH.items() for target in sorted(targets)
        if _layer_of(target, layers) > _layer_of(module, layers)
    ]
    assert not against, "imports against the layer order:\n" + "\n".join(against)


def test_no_import_cycle() -> None:
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_function_level_and_relative_imports() -> None:
    # A checker that missed imports inside functions would pass any layout.
    source = "def f():\n    from optnas.networks import costs\n    from . import base\n    import optnas.cli\n"
    assert _imports("optnas.spaces.nasbench201", source) == {
        "optnas.networks.costs", "optnas.spaces.base", "optnas.cli",
    }


def _declared(path: Path, classes: set[str] | None = None) -> set[str]:
    """The fields, properties, methods and class attributes the classes of a module declare
    (those named in ``classes``, or all), read from its source."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef) and (classes is None or node.name in classes):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    names.update(target.id for target in item.targets if isinstance(target, ast.Name))
    return {name for name in names if not name.startswith("__")}


# What a search's configuration offers, and what of it a space owns: the options it is built
# from, and the names the spaces declare themselves (a space's own ``n_classes``).
CONFIG_NAMES = _declared(PACKAGE / "config.py", {"SearchConfig"})
SPACE_OWN = _declared(PACKAGE / "spaces" / "base.py", {"SpaceOptions"}) | {
    name for path in (PACKAGE / "spaces").glob("*.py") for name in _declared(path) - _declared(path, {"SpaceOptions"})
}


def _configuration_reads(source: str) -> list[str]:
    """Where a module reads what the configuration offers beyond a space's own, or takes it whole."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in CONFIG_NAMES - SPACE_OWN:
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.arg):
            annotation = ast.unparse(node.annotation) if node.annotation is not None else ""
            if node.arg == "config" or "SearchConfig" in annotation:
                found.append((node.lineno, f"parameter {node.arg}"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


def test_spaces_read_only_their_own_options() -> None:
    # The configuration checks the options a space rules out from its declared capabilities; a
    # space that read them itself would tie a lower layer to the configuration's fields, by
    # duck typing the import check cannot see.
    found = [f"{module} {read}" for module, path in MODULES.items() if module.startswith("optnas.spaces")
             for read in _configuration_reads(path.read_text())]
    assert not found, "spaces reading configuration they do not own:\n" + "\n".join(found)


def test_the_configuration_read_checker_sees_reads_and_whole_configurations() -> None:
    source = ("class S:\n    @classmethod\n    def from_options(cls, options):\n"
              "        if options.sec_obj == 'macs' or options.optim:\n            pass\n"
              "        return options.width_mult, cls.n_classes('digits')\n"
              "def f(config, options: 'SearchConfig'):\n    pass\n")
    assert _configuration_reads(source) == [
        "line 4: options.optim", "line 4: options.sec_obj", "line 7: parameter config",
        "line 7: parameter options",
    ]


# The checks below run fresh interpreters, so that nothing imported by the tests counts: they
# start with the session and run beside the other tests (conftest.start_with_session).

_NO_TORCH = """
import sys
from click.testing import CliRunner
from optnas.cli import main
result = CliRunner().invoke(main, sys.argv[1:])
assert result.exit_code == 0, result.output
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "ofa", "sklearn", "xgboost"})
print(",".join(heavy))
"""
QUICK_COMMANDS = [("--help",), ("search", "--help"), ("studies",), ("trials",)]


def _quick_command_does_not_import_torch(command: tuple[str, ...], tmp_path: Path) -> None:
    command = list(command)
    url = f"sqlite:///{tmp_path / 'quick.db'}"
    study = optuna.create_study(study_name="quick", storage=url, directions=["maximize", "minimize"])
    study.optimize(lambda trial: (trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)), n_trials=3)
    if command[0] in ("studies", "trials"):
        command = command + ["--storage", url] + (["--study-name", "quick"] if command[0] == "trials" else [])
    result = subprocess.run([sys.executable, "-c", _NO_TORCH, *command], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"`optnas {' '.join(command)}` imported {result.stdout.strip()}"


_PLAIN_SAMPLER = """
import sys
import numpy as np
from optnas.predictors import get_predictor
from optnas.samplers import SurrogateSampler
get_predictor("as", random_state=0).fit(np.arange(40.0).reshape(20, 2), np.arange(20.0))
print("torch" in sys.modules)
"""


def _sampler_and_adaptive_switching_do_without_torch() -> None:
    result = subprocess.run([sys.executable, "-c", _PLAIN_SAMPLER], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


_COST_MODEL = """
import sys
from optnas.config import SearchConfig
from optnas.evaluation.costs import exact_costs, exact_costs_vectors
from optnas.networks.tflm_memory import tflm_memory, tflm_memory_vectors
from optnas.samplers import SurrogateSampler
from optnas.spaces import MobileNetV3Space
from optnas.studies.sampling import make_sampler
config = SearchConfig(search_space=sys.argv[1], dataset=sys.argv[2], sec_obj=sys.argv[3]).validate()
assert isinstance(make_sampler(config), SurrogateSampler)
costs = config.cost_options()
space = costs.space
exact_costs(costs, space.largest())
vector_costs = exact_costs_vectors(costs, space)
if vector_costs is not None:
    vector_costs(space.to_vector(space.smallest()))
    tflm_memory_vectors(space, 10)(space.to_vector(space.smallest()))
if isinstance(space, MobileNetV3Space):
    tflm_memory(space.largest(), 10)
print(",".join(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "ofa"})))
"""
COST_MODEL_SEARCHES = [("mobilenetv3", "digits", "flash_kb"), ("eemobilenetv3", "digits", "avg_macs"),
                       ("nasbench201", "cifar10", "params")]


def _cost_model_does_without_torch(space: str, dataset: str, sec_obj: str) -> None:
    result = subprocess.run([sys.executable, "-c", _COST_MODEL, space, dataset, sec_obj], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"the cost model imported {result.stdout.strip()}"


@start_with_session
def _scenarios(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Scenarios:
    """The interpreters of the selected tests below, by test and parameters."""
    started: Scenarios = {}
    for command in selected_values(request, test_quick_commands_do_not_import_torch, "command"):
        started[("quick", *command)] = partial(_quick_command_does_not_import_torch, command,
                                               tmp_path_factory.mktemp("quick"))
    if selected(request, test_the_sampler_and_adaptive_switching_do_without_torch):
        started["sampler"] = _sampler_and_adaptive_switching_do_without_torch
    for case in selected_values(request, test_the_cost_model_and_the_surrogate_sampler_do_without_torch, "case"):
        started[("costs", *case)] = partial(_cost_model_does_without_torch, *case)
    return started


@pytest.mark.parametrize("command", QUICK_COMMANDS)
def test_quick_commands_do_not_import_torch(command: tuple[str, ...], session_scenarios: SessionScenarios) -> None:
    session_scenarios.result(__name__, ("quick", *command), timeout=300)


def test_the_sampler_and_adaptive_switching_do_without_torch(session_scenarios: SessionScenarios) -> None:
    """A plain Optuna study with SurrogateSampler pays no torch import (only the mlp predictor needs it)."""
    session_scenarios.result(__name__, "sampler", timeout=300)


@pytest.mark.parametrize("case", COST_MODEL_SEARCHES, ids=["-".join(case) for case in COST_MODEL_SEARCHES])
def test_the_cost_model_and_the_surrogate_sampler_do_without_torch(case: tuple[str, str, str],
                                                                   session_scenarios: SessionScenarios) -> None:
    """Building a search's sampler and costing candidates (exact and vectorised) import no torch."""
    session_scenarios.result(__name__, ("costs", *case), timeout=300)
