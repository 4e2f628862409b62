"""Errors about options, in the library's terms: a front end names the options its own way.

The library names an option as its caller knows it: a :class:`~optnas.config.SearchConfig`
field (``min_resolution``) or a parameter of the function that refuses it (``n_check``). The
command line renders the same error with its flags (``--lr``, ``--n-check``).
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable
from typing import Any


class OptionError(ValueError):
    """A bad option value, or options that do not go together.

    Its message is a :meth:`str.format` template whose fields are either values, given as
    keyword arguments, or options: every field without a value. ``str()`` names each option by
    its name; :meth:`render` lets a front end name it otherwise.

    Example: ``OptionError("{lmax} must be a positive number, got {value:g}", value=-1.0)``
    reads "lmax must be a positive number, got -1", and "--lmax must be..." on the command line.

    Args:
        template: the message, ``{name}`` for each option and each value.
        values: the values the template formats.
    """

    def __init__(self, template: str, **values: Any) -> None:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
        if not all(field.isidentifier() for field in fields):
            raise TypeError(f"OptionError fields must be plain names, got {fields}")
        self.template = template
        self.values = values
        self.options = tuple(dict.fromkeys(field for field in fields if field not in values))
        super().__init__(self.render(str))

    def render(self, name: Callable[[str], str]) -> str:
        """Return the message with each option named by ``name``.

        Args:
            name: maps an option's name to how the reader knows it, e.g. its command-line flag.
        """
        return self.template.format(**self.values, **{option: name(option) for option in self.options})

    def __reduce__(self) -> tuple[Any, ...]:
        # The default would rebuild it from the rendered message alone.
        return functools.partial(type(self), self.template, **self.values), ()
