"""Tolerances for float32 results that differ only in the order of their sums (another process count,
another instruction set), derived from the arithmetic rather than from one machine's results.

Summing n float32 terms in two different orders gives results that differ by at most
gamma_n * sum|t_i| with gamma_n ~= n * eps (Higham, Accuracy and Stability of Numerical Algorithms,
§4.2). An element whose terms cancel (a gradient near zero) can thus differ by far more than its own
size, so an elementwise relative test is wrong: the error is bounded relative to the magnitude of the
terms, which the L2 norm of the whole tensor stands for. The comparisons below are therefore
normwise, ||actual - expected||_2 <= rtol * ||scale||_2, one tensor at a time.
"""
import torch

EPS32 = torch.finfo(torch.float32).eps


def summation_rtol(n_terms):
    """gamma_n = n * eps / (1 - n * eps): the worst-case relative error of a float32 sum of n terms."""
    return n_terms * EPS32 / (1 - n_terms * EPS32)


def relative_l2(actual, expected, scale=None):
    """||actual - expected||_2 / ||scale||_2 (scale: `expected` by default), in float64."""
    scale = expected if scale is None else scale
    norm = scale.double().norm().item()
    diff = (actual.double() - expected.double()).norm().item()
    return diff / norm if norm else diff


def assert_normwise_close(actual, expected, rtol, what, scale=None):
    """Each tensor of the dicts `actual` and `expected` (same keys) within `rtol` of the other, normwise,
    relative to the same tensor of `scale` (default `expected`)."""
    assert actual.keys() == expected.keys(), what
    scale = expected if scale is None else scale
    worst, key = max((relative_l2(actual[k], expected[k], scale[k]), k) for k in expected)
    assert worst <= rtol, f"{what}: {key} differs by {worst:.3g} (relative L2), more than {rtol:.3g}"
