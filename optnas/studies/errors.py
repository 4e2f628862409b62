"""The errors the studies layer raises for users, each with a one-line message.

Kept apart from the modules that raise them so that the command line can tell them apart
(usage errors exit with 2, failures with 1) without importing what runs a search.
"""


class StorageError(RuntimeError):
    """A storage that cannot be opened; the message never holds a password."""


class StudyError(RuntimeError):
    """A study that cannot be created or resumed as asked; nothing was written."""


class SearchFailedError(RuntimeError):
    """Evaluations fail one after the other; the message holds the last reason."""
