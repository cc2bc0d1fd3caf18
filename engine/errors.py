"""Error classes shared by every stage.

Stages raise; they never return an ``{"status": "error"}`` dict. The engine
decides what to do from the class: a transient error is retried with backoff,
a permanent one fails the job at once with its reason.
"""


class ContimgError(Exception):
    """Base of all errors raised by the pipeline core."""


class StageError(ContimgError):
    """A processing stage could not produce its product."""


class TransientStageError(StageError):
    """Worth retrying: I/O hiccup, lock timeout, resource briefly unavailable."""


class PermanentStageError(StageError):
    """Retrying cannot help: corrupt input, failed QA, inconsistent files."""


class StateError(ContimgError):
    """A state transition was attempted from a state other than the expected one."""


class ConfigError(ContimgError):
    """Configuration is invalid; the message names the key and the file."""
