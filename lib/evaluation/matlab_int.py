"""MATLAB int32 arithmetic on numpy arrays: round half away from zero, saturate, NaN -> 0.

The WIDER ground truth is int32, so MATLAB evaluates every expression that mixes it with the
(double) predictions in saturating int32 arithmetic. Values are carried in int64 and saturated
after each operation, which is exact for int32 operands.
"""
import numpy as np

INT32_MIN = -(2 ** 31)
INT32_MAX = 2 ** 31 - 1


def to_int32(x):
    """MATLAB int32(x) of float64 values: round half away from zero, saturate, NaN -> 0 (int64 array)."""
    x = np.asarray(x, dtype=np.float64)
    t = np.trunc(x)
    with np.errstate(invalid="ignore"):  # inf - inf
        r = np.where(np.abs(x - t) >= 0.5, t + np.sign(x), t)
    r = np.minimum(np.maximum(r, INT32_MIN), INT32_MAX)
    r[np.isnan(r)] = 0
    return r.astype(np.int64)


def saturate(x):
    """int64 results of int32 operations clipped to the int32 range."""
    return np.minimum(np.maximum(x, INT32_MIN), INT32_MAX)


def add(a, b):
    """a + b for int32 a, b (int64 arrays)."""
    return saturate(a + b)


def sub(a, b):
    """a - b for int32 a, b."""
    return saturate(a - b)


def mul(a, b):
    """a .* b for int32 a, b (int64 cannot overflow: |a|, |b| <= 2^31)."""
    return saturate(a * b)


def div(a, b):
    """a ./ b for int32 a, b: the quotient rounded half away from zero; x/0 saturates, 0/0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return to_int32(a.astype(np.float64) / b.astype(np.float64))
