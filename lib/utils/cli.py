"""Helpers shared by the command-line scripts: the argument parser and its value checks, one-line warnings
and error messages, signals.

Command-line convention: long options are hyphenated (--latest-every, --world-size); the underscore
spellings of older versions and of the community port (--latest_every, --world_size) are accepted as
hidden aliases. A usage error is one `error:` line and exit code 2 (lib/utils/exit_codes.py).
"""
import argparse
import math
import signal
import sys
import threading
import warnings
from contextlib import contextmanager

from lib.utils.exit_codes import ExitCode


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser with the project's convention: `--name_with_underscores` is read as
    `--name-with-underscores` when only the hyphenated option exists (in help and error messages it is
    the hyphenated one), and an error prints one `error: ...` line (no usage, no program name) and
    exits with ExitCode.BAD_INPUT."""

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(self._hyphenated(args), namespace)

    def _hyphenated(self, args):
        """`args` with each underscore alias of a long option (or, with allow_abbrev, of its abbreviation)
        replaced by the hyphenated spelling, up to a `--`."""
        out = []
        for i, arg in enumerate(args):
            if arg == "--":
                return out + args[i:]
            name, eq, value = arg.partition("=")
            if name.startswith("--") and "_" in name and name not in self._option_string_actions:
                hyphenated = "--" + name[2:].replace("_", "-")
                if any(option == hyphenated or (self.allow_abbrev and option.startswith(hyphenated))
                       for option in self._option_string_actions):
                    arg = hyphenated + eq + value
            out.append(arg)
        return out

    def error(self, message):
        self.exit(ExitCode.BAD_INPUT, f"error: {message}\n")


def int_at_least(minimum):
    """argparse type: a whole number >= `minimum`."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def _finite_number(what, accept, requirement):
    """argparse type: a finite number for which `accept(value)` holds; the messages name `what` the option
    takes (a text that is no number) and the `requirement` (a number outside it)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value
    return parse


def number_at_least(minimum, what="a number"):
    """argparse type: a finite number >= `minimum` (`what`: the kind of number, for the message)."""
    return _finite_number(what, lambda value: value >= minimum, f"at least {minimum:g}")


def positive_number(what="a number"):
    """argparse type: a finite number > 0 (`what`: the kind of number, for the message)."""
    return _finite_number(what, lambda value: value > 0, "greater than 0")


def probability(text):
    """argparse type: a score threshold, a number from 0 to 1."""
    return _finite_number("a score from 0 to 1", lambda value: 0 <= value <= 1, "a score from 0 to 1")(text)


def minutes(text):
    """argparse type: a number of minutes >= 0."""
    return _finite_number("a number of minutes", lambda value: value >= 0, "a number of minutes >= 0")(text)


def positive_seconds(text):
    """argparse type: a positive number of seconds."""
    return _finite_number("a number of seconds", lambda value: value > 0, "a positive number of seconds")(text)


def tcp_port(text):
    """argparse type: a TCP port number, 1 .. 65535."""
    port = int_at_least(1)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 1 .. 65535, got {port}")
    return port


def _one_line(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def one_line_warnings():
    """Print Python warnings as `warning: <message>`, without the source line they came from."""
    warnings.formatwarning = _one_line


def first_line(error):
    """The first line of an exception's message (C++ errors carry stack traces below it)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def error_text(error):
    """One line for an expected error: 'file: reason' for OS errors, else the exception's message."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


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
