"""User-facing errors.

Every problem a user can fix (a wrong path, a corrupt file, an unknown option) is raised as a
:class:`MedganError` subclass with a one-line message naming the problem and the fix. The CLI turns it
into one line on stderr and exit code 1, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MedganError(Exception):
    """A user error: the message is shown as one line, the exit code is 1."""

    exit_code = 1


class DatasetError(MedganError):
    """A dataset cannot be found, read or used as asked."""


class ConfigError(MedganError):
    """A configuration file or option is invalid."""

    exit_code = 2


class CheckpointError(MedganError):
    """A checkpoint is missing, corrupt, unsafe or incompatible."""


class TrainingError(MedganError):
    """Training cannot start or had to stop (e.g. non-finite losses)."""


class OutputError(MedganError):
    """An output location is unusable (exists, not writable, not enough space)."""


class EvaluationError(MedganError):
    """An evaluation cannot be run as asked (mismatch, leakage, too few samples)."""
