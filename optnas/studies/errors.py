"""The errors the studies layer raises for users, each with a one-line message.

Kept apart from the modules that raise them so that the command line can tell them apart
(usage errors exit with 2, failures with 1) without importing what runs a search.
"""

from __future__ import annotations

from optnas.errors import OptionError


class StorageError(RuntimeError):
    """A storage that cannot be opened; the message never holds a password."""


class StudyError(RuntimeError):
    """A study that cannot be created or resumed as asked; nothing was written."""


class StudyExistsError(StudyError):
    """A new study whose name the storage already holds.

    Args:
        study_name: the name.
    """

    def __init__(self, study_name: str) -> None:
        self.study_name = study_name
        super().__init__(f"study '{study_name}' already exists in this storage")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return type(self), (self.study_name,)


class StudyOptionError(OptionError, StudyError):
    """Options that contradict the study they are given with (see :class:`~optnas.errors.OptionError`)."""


class SearchFailedError(RuntimeError):
    """Evaluations fail one after the other; the message holds the last reason."""
