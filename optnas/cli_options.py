"""Options that several ``optnas`` commands share, declared once: decorators for :mod:`optnas.cli`.

Each decorator takes what differs between the commands (the help text, whether the option is
required, its default) and keeps the rest (the flag, its type and validation) the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from optnas.config import flag as config_flag
from optnas.config import options
from optnas.spaces.mobilenetv3 import MAX_RESOLUTION, MIN_RESOLUTION

DEFAULT_STORAGE = "sqlite:///optnas.db"
TORCH_THREADS_HELP = "Torch CPU threads [default: one per physical core it may run on]."

Decorator = Callable[[Callable], Callable]


def together(*decorators: Decorator) -> Decorator:
    """Return one decorator applying ``decorators`` so that their options appear in the given order.

    Args:
        decorators: click option decorators, top to bottom as they would be stacked.
    """

    def apply(command: Callable) -> Callable:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def storage_option(help: str = "Optuna storage URL.") -> Decorator:
    """``--storage URL``, defaulting to :data:`DEFAULT_STORAGE`.

    Args:
        help: what the storage is to this command.
    """
    return click.option("--storage", default=DEFAULT_STORAGE, show_default=True, help=help)


def study_name_option(help: str = "The study.", required: bool = True) -> Decorator:
    """``--study-name NAME``.

    Args:
        help: what the study is to this command.
        required: whether the command needs it (otherwise it defaults to None).
    """
    return click.option("--study-name", required=required, default=None, help=help)


def check_device(device: str) -> None:
    """Refuse a device torch does not know or that this machine lacks (CUDA without a GPU).

    Args:
        device: a torch device string, e.g. ``cuda:1``.
    """
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")


def _device_callback(ctx: click.Context, param: click.Parameter, device: str | None) -> str | None:
    if device is not None:
        try:
            check_device(device)
        except ValueError as error:
            # The same one-line usage error as the commands' own errors, not click's "Invalid value".
            raise click.UsageError(str(error), ctx) from None
    return device


def device_option(default: str | None = "cpu", help: str = "Torch device, e.g. cuda:0.") -> Decorator:
    """``--device DEVICE``, checked as it is parsed (:func:`check_device`).

    Args:
        default: the device when none is given; None leaves the choice to the command.
        help: what runs on the device.
    """
    return click.option("--device", default=default, show_default=default is not None, help=help,
                        callback=_device_callback)


def seed_option(help: str, default: int | None = 0) -> Decorator:
    """``--seed N``.

    Args:
        help: what the seed draws.
        default: the seed when none is given; None leaves the choice to the command.
    """
    return click.option("--seed", default=default, show_default=default is not None, type=int, help=help)


def threads_option(help: str = TORCH_THREADS_HELP, default: int | None = None) -> Decorator:
    """``--threads N`` (at least one).

    Args:
        help: whose threads they are.
        default: the count when none is given; None leaves the choice to the command.
    """
    return click.option("--threads", default=default, show_default=default is not None, type=click.IntRange(1),
                        help=help)


def jobs_option() -> Decorator:
    """``--jobs N``: trials evaluated at once in this process."""
    return click.option("--jobs", default=1, show_default=True, type=click.IntRange(1),
                        help="Trials evaluated at once in this process (threads).")


def quiet_option(help: str = "No progress bars.") -> Decorator:
    """``--quiet``.

    Args:
        help: what it silences.
    """
    return click.option("--quiet", is_flag=True, help=help)


def _search_default(name: str) -> Any:
    return next(field.default for field in options() if field.name == name)


def resolution_options(lowest_help: str = "Lowest resolution.") -> Decorator:
    """``--lr``, ``--ur`` and ``--rstep`` (as parameters ``low_res``, ``high_res``, ``rstep``).

    The defaults are the search's; resolutions outside what the MobileNetV3 spaces allow are refused.

    Args:
        lowest_help: the help of ``--lr``.
    """
    resolution = click.IntRange(MIN_RESOLUTION, MAX_RESOLUTION)
    return together(
        click.option("--lr", "low_res", default=_search_default("min_resolution"), show_default=True,
                     type=resolution, help=lowest_help),
        click.option("--ur", "high_res", default=_search_default("max_resolution"), show_default=True,
                     type=resolution, help="Highest resolution."),
        click.option("--rstep", default=_search_default("resolution_step"), show_default=True,
                     type=click.IntRange(1), help="Resolution step."),
    )


def config_options(command: Callable) -> Callable:
    """Add one option per :class:`~optnas.config.SearchConfig` field, each defaulting to "not given".

    ``--device`` is checked as it is parsed, as :func:`device_option` is.
    """
    for field in reversed(options()):
        flag = "--" + config_flag(field.name)
        help_text = field.metadata["help"]
        if field.default is not None:
            help_text += f" [default: {field.default}]"
        if field.metadata.get("is_flag"):
            declarations, kind = (f"{flag}/--no-{flag[2:]}",), {}
        elif "choices" in field.metadata:
            declarations, kind = (flag,), {"type": click.Choice(field.metadata["choices"])}
        else:
            declarations, kind = (flag,), {"type": field.metadata.get("type", str)}
        callback = _device_callback if field.name == "device" else None
        command = click.option(*declarations, field.name, default=None, help=help_text, callback=callback,
                               **kind)(command)
    return command


def flag_of(name: str) -> str:
    """Return the flag the running command knows an option by (``--lr`` for ``min_resolution``).

    The command's own option with that parameter name, else the search option's flag, else the
    name spelled as flags are (``--no-upload`` for ``no_upload``).

    Args:
        name: an option as the library names it (:class:`~optnas.errors.OptionError`): a
            :class:`~optnas.config.SearchConfig` field or a parameter of the refusing function.
    """
    context = click.get_current_context(silent=True)
    if context is not None:
        for param in context.command.params:
            if isinstance(param, click.Option) and param.name == name:
                return param.opts[0]
    if name in {field.name for field in options()}:
        return "--" + config_flag(name)
    return "--" + name.replace("_", "-")


def given_config(values: dict[str, Any]) -> dict[str, Any]:
    """Return the :func:`config_options` among a command's parameters that were given.

    Args:
        values: the command's keyword arguments.
    """
    names = {field.name for field in options()}
    return {name: value for name, value in values.items() if name in names and value is not None}
