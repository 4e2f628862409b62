"""Errors about options: library terms in the library, flags on the command line."""

from __future__ import annotations

import ast
import pickle
import string
from pathlib import Path

import click
import pytest

from optnas.cli import main
from optnas.config import SearchConfig, options
from optnas.errors import OptionError
from optnas.latency.table import LatencyTableError
from optnas.studies.errors import StudyError, StudyExistsError, StudyOptionError
from tests.conftest import invoke_cli

PACKAGE = Path(__file__).resolve().parent.parent / "optnas"
# The errors whose first argument is an OptionError template.
TEMPLATED = {"OptionError", "LatencyTableError", "StudyOptionError"}


def test_an_option_error_names_options_by_their_library_names() -> None:
    error = OptionError("{lmax} must be a positive number, got {value:g}", value=-1.0)
    assert str(error) == "lmax must be a positive number, got -1"
    assert error.options == ("lmax",)
    assert error.render(lambda name: f"--{name}") == "--lmax must be a positive number, got -1"


def test_values_are_formatted_once_so_their_braces_stay() -> None:
    error = OptionError("{config}: {value!r} is not a {search_space}", value={"a": "{b}"})
    assert str(error) == "config: {'a': '{b}'} is not a search_space"
    assert error.options == ("config", "search_space")


def test_fields_must_be_plain_names() -> None:
    with pytest.raises(TypeError, match="plain names"):
        OptionError("{} must be positive")
    with pytest.raises(TypeError, match="plain names"):
        OptionError("{config.lr} must be positive")


@pytest.mark.parametrize("error", [
    OptionError("{n_check} must be at least 1, got {value}", value=0),
    LatencyTableError("{source} was built for {built} classes: rebuild it with {n_classes} {count}", source="lut.json",
                      built=10, count=100),
    StudyOptionError("the options contradict study '{study}': {min_resolution}: stored {stored!r}", study="s",
                     stored=32),
    StudyExistsError("s"),
])
def test_errors_pickle_with_their_options(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert getattr(copy, "options", None) == getattr(error, "options", None)


def test_study_errors_stay_study_errors() -> None:
    assert issubclass(StudyOptionError, StudyError) and issubclass(StudyOptionError, OptionError)
    assert issubclass(StudyExistsError, StudyError)
    assert str(StudyExistsError("s")) == "study 's' already exists in this storage"


def test_the_command_line_names_the_same_error_with_its_flags(tmp_path: Path) -> None:
    with pytest.raises(OptionError) as refused:
        SearchConfig(min_resolution=4, max_resolution=4).validate()
    assert str(refused.value) == "the resolution range min_resolution 4 max_resolution 4 is outside 8..1024"
    result = invoke_cli("search", "--lr", "4", "--ur", "4", "--storage", f"sqlite:///{tmp_path / 's.db'}",
                        "--save", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.endswith("Error: the resolution range --lr 4 --ur 4 is outside 8..1024\n")


def _cli_option_names() -> set[str]:
    """Every parameter name of the options of every command, `no_x` for a `--x/--no-x` flag."""
    names: set[str] = set()
    commands: list[click.Command] = [main]
    while commands:
        command = commands.pop()
        if isinstance(command, click.Group):
            commands.extend(command.commands.values())
        for param in command.params:
            if isinstance(param, click.Option):
                names.add(param.name)
                if param.secondary_opts:
                    names.add(f"no_{param.name}")
    return names


def _templated_options() -> dict[str, set[str]]:
    """The options that the literal templates of the package name (``"..."``, ``"..." if c else "..."``), by module."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) in TEMPLATED and node.args):
                continue
            template = node.args[0]
            branches = [template.body, template.orelse] if isinstance(template, ast.IfExp) else [template]
            given = {keyword.arg for keyword in node.keywords}
            for branch in branches:
                if isinstance(branch, ast.Constant):
                    fields = {field for _, field, _, _ in string.Formatter().parse(branch.value) if field}
                    found.setdefault(str(path.relative_to(PACKAGE)), set()).update(fields - given)
    return found


def test_every_option_a_template_names_has_a_flag() -> None:
    known = {field.name for field in options()} | _cli_option_names()
    templated = _templated_options()
    assert len(templated) >= 10
    unknown = {module: sorted(names - known) for module, names in templated.items() if names - known}
    assert not unknown, f"options with no flag of their own: {unknown}"
