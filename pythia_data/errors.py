"""The exception hierarchy of pythia-data.

Library code raises a subclass of :class:`PythiaDataError`; the CLI maps each class to a
one-line message and an exit code in one place (:func:`pythia_data.cli.main`).
"""

from __future__ import annotations


class PythiaDataError(Exception):
    """Base class of every error pythia-data raises on purpose."""

    exit_code = 2


class UsageError(PythiaDataError):
    """Bad options or arguments."""


class InputError(PythiaDataError):
    """A file is missing, unreadable, or not what it should be."""


class FormatError(InputError):
    """A file is not a valid MMIDIDX index/data pair (bad magic, version, sizes...)."""


class ShardError(InputError):
    """A set of shards is incomplete, mis-numbered or inconsistent."""


class ConfigError(InputError):
    """A GPT-NeoX config file cannot be read or lacks what is needed."""


class VerificationError(PythiaDataError):
    """Data does not match what was expected (checksum, cache file). Exit code 1."""

    exit_code = 1


class CacheMismatchError(VerificationError):
    """An index-mapping cache file exists but does not match its inputs."""


class OutputError(PythiaDataError):
    """An output cannot be written (no space, permission...)."""


class OutputExistsError(OutputError):
    """An output is already there and replacing it was not asked for (``--force``)."""

    def __init__(self, path) -> None:
        self.path = str(path)
        super().__init__(f"{self.path} already exists (remove it or pass --force)")


def quoted(value, limit: int = 200) -> str:
    """``repr(value)`` for an error message, cut after ``limit`` characters so that a quoted
    line of a hostile or binary file keeps the message to one readable line."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"
