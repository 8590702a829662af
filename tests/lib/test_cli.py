"""lib/utils/cli.py: the number checks the detection scripts share (test.py, eval.py, app.py)."""
import argparse

import pytest

from lib.utils.cli import number_at_least, positive_number, probability


@pytest.mark.parametrize("check, text, value", [
    (number_at_least(0), "0", 0.0), (number_at_least(0), "0.25", 0.25), (number_at_least(-1), "-1", -1.0),
    (positive_number(), "1e-9", 1e-9), (positive_number(), "3", 3.0),
    (probability, "0", 0.0), (probability, "1", 1.0), (probability, "0.05", 0.05),
])
def test_numbers_in_range_are_read_as_floats(check, text, value):
    assert check(text) == value and isinstance(check(text), float)


@pytest.mark.parametrize("check, text, message", [
    (number_at_least(0), "-0.5", "must be at least 0, got -0.5"),
    (number_at_least(0.5), "0.25", "must be at least 0.5, got 0.25"),
    (number_at_least(0), "inf", "must be at least 0, got inf"),
    (number_at_least(0), "nan", "must be at least 0, got nan"),
    (number_at_least(0, "a margin"), "wide", "expected a margin, got 'wide'"),
    (positive_number(), "0", "must be greater than 0, got 0"),
    (positive_number(), "nan", "must be greater than 0, got nan"),
    (positive_number(), "inf", "must be greater than 0, got inf"),
    (positive_number("a number of megabytes"), "lots", "expected a number of megabytes, got 'lots'"),
    (probability, "1.5", "must be a score from 0 to 1, got 1.5"),
    (probability, "nan", "must be a score from 0 to 1, got nan"),
    (probability, "half", "expected a score from 0 to 1, got 'half'"),
])
def test_numbers_out_of_range_are_named_with_the_range(check, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        check(text)
    assert str(refused.value) == message
