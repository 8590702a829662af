"""Helpers shared by the command-line scripts: one-line warnings and error messages, signals."""
import signal
import threading
import warnings
from contextlib import contextmanager


def _one_line(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def one_line_warnings():
    """Print Python warnings as `warning: <message>`, without the source line they came from."""
    warnings.formatwarning = _one_line


def first_line(error):
    """The first line of an exception's message (C++ errors carry stack traces below it)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def sigterm_as_ctrl_c():
    """SIGTERM raises KeyboardInterrupt inside the block, as Ctrl-C (SIGINT) does; a no-op outside the
    main thread. The previous handler comes back when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
