"""The reference scripts' flags: every `--flag` the seed README names is either accepted in its
underscore spelling as an alias of our option (hidden from --help), or refused with one line
that names what to use instead. Only parsing runs here, never a search."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click
import optuna
import pytest

from optnas.cli import _REFERENCE_REFUSED, _REFERENCE_RENAMED, _reference_args, main
from tests.conftest import invoke_cli

ROOT = Path(__file__).resolve().parent.parent

# The flags of the seed README when this test was written: used only where the README itself
# is not at hand (OPTNAS_SEED_README, or shared/reference/seed-README.md beside or in the repo).
FROZEN_SEED_FLAGS = (
    "--amax", "--data", "--dataset", "--expr", "--gpu", "--iterations", "--lr", "--mmax", "--n_classes",
    "--n_epochs", "--n_exits", "--n_gpus", "--n_workers", "--penalty", "--pmax", "--predictor", "--prefer",
    "--pretrained", "--resume", "--save", "--save_stats_csv", "--search_space", "--sec_obj", "--supernet_path",
    "--ur", "--vld_size", "--wa", "--wm", "--wp",
)


def _seed_readme() -> Path | None:
    candidates = [os.environ.get("OPTNAS_SEED_README", ""), ROOT.parent / "shared/reference/seed-README.md",
                  ROOT / "shared/reference/seed-README.md"]
    return next((Path(path) for path in candidates if path and Path(path).is_file()), None)


def _seed_flags() -> list[str]:
    readme = _seed_readme()
    if readme is None:
        return list(FROZEN_SEED_FLAGS)
    return sorted(set(re.findall(r"(?<![\w-])--[A-Za-z][\w-]*", readme.read_text())))


SEED_FLAGS = _seed_flags()


def _commands(group: click.Group = main, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


COMMANDS = _commands()


def _option(command: click.Command, flag: str) -> click.Option | None:
    return next((param for param in command.params
                 if isinstance(param, click.Option) and flag in param.opts + param.secondary_opts), None)


def _value(param: click.Parameter) -> list[str]:
    """A value ``param`` accepts that differs from its default (none for a flag)."""
    if isinstance(param, click.Option) and (param.is_flag or param.count):
        return []
    choices = [str(choice) for choice in getattr(param.type, "choices", ())]
    for candidate in [*choices, "3", "64", "0.5", "some_value"]:
        try:
            converted = param.type.convert(candidate, param, None)
        except click.BadParameter:
            continue
        if converted != param.default and (not param.multiple or (converted,) != param.default):
            return [candidate]
    raise AssertionError(f"no test value for {param.name}")


def _required(command: click.Command, skip: click.Parameter) -> list[str]:
    """Values for the command's required options and its arguments, so that it parses."""
    args: list[str] = []
    for param in command.params:
        if param is skip:
            continue
        if isinstance(param, click.Argument):
            args += _value(param)
        elif isinstance(param, click.Option) and param.required:
            args += [param.opts[0], *_value(param)]
    return args


def _ours(flag: str) -> str:
    return _REFERENCE_RENAMED.get(flag, flag.replace("_", "-"))


def test_the_seed_flags_are_found() -> None:
    assert len(SEED_FLAGS) >= 25 and {"--sec_obj", "--supernet_path", "--vld_size", "--n_epochs"} <= set(SEED_FLAGS)


@pytest.mark.parametrize("flag", SEED_FLAGS)
def test_a_seed_flag_is_an_alias_or_refused_in_one_line(flag: str) -> None:
    if flag in _REFERENCE_REFUSED:
        lacking = [path for path, command in COMMANDS if _option(command, flag) is None]
        assert lacking
        for path in lacking:
            result = invoke_cli(*path, flag, "x")
            assert result.returncode == 2, (path, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in result.stderr, (path, result.stderr)
            assert f"{flag} is a flag of the reference scripts that optnas does not support; " in lines[0]
        return
    ours = _ours(flag)
    accepting = [(path, command, _option(command, ours)) for path, command in COMMANDS if _option(command, ours)]
    assert accepting, f"{flag}: no command has {ours}; alias it or add it to cli._REFERENCE_REFUSED"
    for path, command, option in accepting:
        base, value = _required(command, option), _value(option)
        expected = command.make_context(path[-1], [*base, ours, *value]).params
        if not option.required:
            assert expected != command.make_context(path[-1], [*base]).params, (path, flag)
        assert command.make_context(path[-1], [*base, flag, *value]).params == expected, (path, flag)
        if value:
            assert command.make_context(path[-1], [*base, f"{flag}={value[0]}"]).params == expected, (path, flag)


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=" ".join)
def test_aliases_are_hidden_from_help(path: tuple[str, ...]) -> None:
    text = invoke_cli(*path, "--help").stdout
    for flag in SEED_FLAGS:
        if "_" in flag:
            assert flag not in text, (path, flag)


def test_values_and_arguments_after_double_dash_are_left_alone() -> None:
    command = main.commands["select"]
    ctx = click.Context(command)
    assert _reference_args(command, ctx, ["--study-name", "--n_gpus", "--n_exits=2", "-n", "--x_y"]) == [
        "--study-name", "--n_gpus", "--n-exits=2", "-n", "--x_y"]
    assert _reference_args(command, ctx, ["--n_exits", "1", "--", "--n_exits"]) == [
        "--n-exits", "1", "--", "--n_exits"]


def test_an_alias_runs_the_command_like_our_spelling(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'quick.db'}"
    study = optuna.create_study(study_name="quick", storage=url, directions=["maximize", "minimize"])
    study.optimize(lambda trial: (trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)), n_trials=2)
    ours = invoke_cli("trials", "--study-name", "quick", "--storage", url, "--format", "json")
    reference = invoke_cli("trials", "--study_name=quick", "--storage", url, "--format", "json")
    assert ours.returncode == reference.returncode == 0, reference.stderr
    assert reference.stdout == ours.stdout
