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
