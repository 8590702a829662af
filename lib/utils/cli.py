"""Helpers shared by the command-line scripts: one-line warnings and error messages."""
import warnings


def _one_line(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def one_line_warnings():
    """Print Python warnings as `warning: <message>`, without the source line they came from."""
    warnings.formatwarning = _one_line


def first_line(error):
    """The first line of an exception's message (C++ errors carry stack traces below it)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
