"""The FDDB tool's Hungarian method (Hungarian.cpp): its choice among equal totals, its non-maximal
answers on wide matrices, worked by hand in Kuhn's terms (cover u, v; tight cells "1"; assigned
cells "1*"). The same matrices were run through the tool's C code: it returns the same columns."""
import itertools

import numpy as np
import pytest
import scipy.optimize

from lib.evaluation.hungarian import _Problem, hungarian_max


def test_equal_totals_take_the_tools_choice():
    # Row maxima 0.75 + 0.5 = column maxima 0.75 + 0.5: on the tie the rows cover, u = (0.75, 0.5), v = 0.
    # Tight cells: (0,0), (1,0). Stars by rows: (0,0)*; row 1's only 1 is in column 0, taken.
    # Routine I: column 1 holds no 1; column 0 is essential (its 1* is in a non-essential row).
    # Routine II: slack of rows 0, 1 in column 1 is 0.25 each; no u is 0, so u -= 0.25 -> (0.5, 0.25)
    # and v[0] += 0.25: now all four cells are tight.
    # Routine I: column 1's first 1 (0,1) -> row 0's 1* (0,0) -> column 0's 1 (1,0), row 1 has no 1*:
    # flip the path: (0,1)* (1,0)*. Every column has its 1*, routine II finds no slack: done.
    rating = [[0.75, 0.5], [0.5, 0.25]]
    assert hungarian_max(rating) == [1, 0]  # 0.5 + 0.5: no pair above 0.5
    # the diagonal has the same total 1.0 and a pair above 0.5; scipy picks it
    assert scipy.optimize.linear_sum_assignment(np.array(rating), maximize=True)[1].tolist() == [0, 1]


def test_wide_matrix_can_end_below_the_maximum():
    # Row maxima 0.625 + 0.5 = 1.125 > column maxima 0.125 + 0.625 + 0.25 = 1.0: columns cover,
    # v = (0.125, 0.625, 0.25), u = 0. Tight: (0,0), (0,1), (1,2). Stars by columns: (0,0)*, column 1's
    # 1 is in row 0 (taken), (1,2)*: both rows are assigned.
    # Routine I: column 1's 1 (0,1) -> row 0's 1* (0,0) -> column 0 has no other 1: row 0 essential.
    # Essential column: 2 (1* in row 1). Routine II: row 1's slack in columns 0, 1 is 0.125 each; u[1]
    # is 0, so u[0] += 0.125 and v[0], v[1] -= 0.125: v = (0, 0.5, 0.25); (1,0) and (1,1) become tight.
    # Routine I: every path from column 1 ends at row 1's 1* in column 2, whose column has no other
    # 1: rows 0 and 1 essential. Routine II: no slack outside essential rows: done at 0.125 + 0.25,
    # although 0.625 + 0.25 is possible. The cover's total equals that maximum (0.875), but the method
    # never requires v = 0 for the unassigned column 1, as a maximal assignment of a wide matrix needs.
    rating = [[0.125, 0.625, 0.0625], [0.0, 0.5, 0.25]]
    assert hungarian_max(rating) == [0, 2]
    assert scipy.optimize.linear_sum_assignment(np.array(rating), maximize=True)[1].tolist() == [1, 2]


def test_one_row_takes_the_first_largest():
    # One row: the row cover u = 0.5 makes columns 1 and 2 tight; the first becomes 1*, and no path can
    # move a lone row's 1*.
    assert hungarian_max([[0.25, 0.5, 0.5, 0.125]]) == [1]
    assert hungarian_max([[0.0, 0.0]]) == [0]


def test_one_row_shortcut_is_the_full_method():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 7))
        row = rng.choice([0.0, 0.125, 0.25, 0.5, 0.3, 0.7], n).tolist()  # many ties
        assert hungarian_max([row]) == _Problem([row]).solve()


def test_square_matrices_get_a_maximal_assignment():
    rng = np.random.default_rng(1)
    for m in (2, 3, 4):
        for _ in range(100):
            r = rng.uniform(0, 1, (m, m)) * (rng.random((m, m)) < 0.6)
            got = r[np.arange(m), hungarian_max(r.tolist())].sum()
            best = max(r[np.arange(m), list(p)].sum() for p in itertools.permutations(range(m)))
            assert got == pytest.approx(best, abs=1e-12)


def test_more_rows_than_columns_is_refused():
    with pytest.raises(ValueError, match="no more rows than columns"):
        hungarian_max([[0.5], [0.25]])
    assert hungarian_max([]) == []
