"""The one exception type for bad input: the CLI prints its message and exits with 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input (a file, a field, a name). The message is one line naming the culprit."""


class UnsupportedConfig(Exception):
    """A config that a backend cannot express on a target; the trial is marked ``unsupported``."""
