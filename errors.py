"""The one exception type users see: the CLI prints its message on one line and exits non-zero."""

__all__ = ["ExitgateError"]


class ExitgateError(Exception):
    """A problem with the user's input or environment; the message says what is wrong and what works."""
