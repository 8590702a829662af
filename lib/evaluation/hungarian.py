"""Kuhn's Hungarian method exactly as the FDDB tool runs it (Hungarian.cpp, Brian Gerkey's C
implementation, maximising): the same initial cover, star placement, search order and tolerance.

Its answers decide discrete true positives (is a matched overlap above 0.5?), and two of them are
not what a generic solver returns (docs/evaluation.md §6.13):
- among assignments of equal total it has its own preference: [[0.75, 0.5], [0.5, 0.25]] gets the
  two 0.5s, not 0.75 + 0.25;
- with more columns than rows it can stop below the maximum: [[0.125, 0.625, 0.0625],
  [0, 0.5, 0.25]] gets 0.125 + 0.25, not 0.625 + 0.25. Square matrices are solved exactly.
scipy.optimize.linear_sum_assignment returns a maximal assignment, so it differs; hence the port.

Terms of Kuhn's paper as the C code uses them: a cover (u, v) with u[i] + v[j] >= r[i][j]; the
cells where that holds with equality (within EPS) are "1"s, the assignment's cells "1*"s; rows and
columns reached by the search are "essential".
"""
EPS = 1e-15
ZERO, ONE, STAR = 0, 1, 2
# Cover adjustments before giving up: the C code has no limit (it would loop for ever instead).
MAX_ROUNDS = 100_000


class _Problem:
    """State of hungarian_t for an m x n rating matrix, m <= n."""

    def __init__(self, r):
        self.r = [list(map(float, row)) for row in r]
        self.m = len(self.r)
        self.n = len(self.r[0]) if self.m else 0
        self.q = [[ZERO] * self.n for _ in range(self.m)]
        self.u = [0.0] * self.m
        self.v = [0.0] * self.n
        self.ess_rows = [False] * self.m
        self.ess_cols = [False] * self.n
        self.row_total = self.col_total = 0.0

    def make_cover(self):
        """Cover by the row maxima or the column maxima, whichever sums less (rows on a tie)."""
        r, m, n = self.r, self.m, self.n
        row_max = [0.0] * m
        col_max = [0.0] * n
        for i in range(m):
            for j in range(n):
                if r[i][j] > row_max[i]:
                    row_max[i] = r[i][j]
            self.row_total += row_max[i]
        for j in range(n):
            for i in range(m):
                if r[i][j] > col_max[j]:
                    col_max[j] = r[i][j]
            self.col_total += col_max[j]
        if self.row_total <= self.col_total:
            self.u = row_max
        else:
            self.v = col_max

    def build_q(self):
        """Mark the tight cells 1 (a 1* stays 1*); every other cell becomes 0, 1*s included."""
        v = self.v
        for ui, r_row, q_row in zip(self.u, self.r, self.q):
            for j, (vj, rij) in enumerate(zip(v, r_row)):
                if abs(ui + vj - rij) < EPS:
                    if q_row[j] == ZERO:
                        q_row[j] = ONE
                else:
                    q_row[j] = ZERO

    def add_stars(self):
        """Initial 1*s: scanning rows (row cover) or columns (column cover), the first 1 whose column
        (row) holds no 1* yet."""
        q, m, n = self.q, self.m, self.n
        if self.row_total <= self.col_total:
            for i in range(m):
                for j in range(n):
                    if q[i][j] == ONE and not any(k != i and q[k][j] == STAR for k in range(m)):
                        q[i][j] = STAR
                        break
        else:
            for j in range(n):
                for i in range(m):
                    if q[i][j] == ONE and not any(k != j and q[i][k] == STAR for k in range(n)):
                        q[i][j] = STAR
                        break

    def routine_one(self):
        """Kuhn's routine I: from each column without a 1*, search an alternating path of 1s and 1*s
        ending in a row without a 1*; flip it and return True (search again), or return False with
        the essential rows and columns marked (routine II next). A row or column holds at most one
        1*; q does not change during the search, so their places are looked up once."""
        q, m, n = self.q, self.m, self.n
        star_of_row = [-1] * m
        col_has_star = [False] * n
        for i in range(m):
            row = q[i]
            for j in range(n):
                if row[j] == STAR:
                    star_of_row[i] = j
                    col_has_star[j] = True
                    break
        path = []  # the path's cells (row, column); path_rows: their rows
        path_rows = []
        self.ess_rows = ess_rows = [False] * m
        j = 0
        while j < n:
            if col_has_star[j]:
                j += 1
                continue
            i = 0  # column j is eligible: search it for a 1
            while i < m:
                if q[i][j] != ONE:
                    i += 1
                    continue
                path.append((i, j))
                path_rows.append(i)
                back_to_column = False
                while not back_to_column:  # case 1: look in row i for a 1*
                    j = star_of_row[i]
                    if j < 0:  # none: flip the path and start again
                        for a, b in path:
                            q[a][b] = STAR if q[a][b] == ONE else ONE
                        return True
                    i = 0  # case 2: search column j (the 1*'s) for a 1 in a row not on the path
                    while True:
                        while i < m and (q[i][j] != ONE or i in path_rows):
                            i += 1
                        if i < m:
                            path += [(path[-1][0], j), (i, j)]
                            path_rows += [path_rows[-1], i]
                            break
                        # none: the row is essential; step back along the path
                        ess_rows[path[-1][0]] = True
                        i, j = path[-1][0] + 1, path[-1][1]
                        if len(path) > 1:
                            del path[-2:], path_rows[-2:]
                            continue
                        path.pop()
                        path_rows.pop()
                        back_to_column = True
                        break
            j += 1
        self.ess_cols = ess_cols = [False] * n
        for i in range(m):
            if star_of_row[i] >= 0 and not ess_rows[i]:
                ess_cols[star_of_row[i]] = True
        return False

    def routine_two(self):
        """Kuhn's routine II: lower the cover by the smallest slack outside the essential lines;
        returns True when that slack is 0 (done)."""
        r, u, v, m, n = self.r, self.u, self.v, self.m, self.n
        ess_rows, ess_cols = self.ess_rows, self.ess_cols
        d = 0.0
        for i in range(m):
            if ess_rows[i]:
                continue
            for j in range(n):
                if ess_cols[j]:
                    continue
                slack = u[i] + v[j] - r[i][j]
                if slack < -EPS:
                    raise RuntimeError(f"Hungarian method: the cover fails at ({i}, {j})")
                if abs(d) < EPS or (slack > -EPS and slack < d):
                    d = slack
        if d < -EPS:
            raise RuntimeError("Hungarian method: negative slack")
        if abs(d) < EPS:
            return True
        if any(not ess_rows[i] and u[i] == 0 for i in range(m)):
            step = d
            for j in range(n):
                if not ess_cols[j] and v[j] < step:
                    step = v[j]
            for i in range(m):
                if ess_rows[i]:
                    u[i] += step
            for j in range(n):
                if not ess_cols[j]:
                    v[j] -= step
        else:
            step = d
            for i in range(m):
                if not ess_rows[i] and u[i] < step:
                    step = u[i]
            for i in range(m):
                if not ess_rows[i]:
                    u[i] -= step
            for j in range(n):
                if ess_cols[j]:
                    v[j] += step
        for i in range(m):
            for j in range(n):
                if u[i] + v[j] - r[i][j] < -EPS:
                    raise RuntimeError(f"Hungarian method: the cover fails at ({i}, {j})")
        self.build_q()
        return False

    def solve(self):
        self.make_cover()
        self.build_q()
        self.add_stars()
        for _ in range(MAX_ROUNDS):
            if not self.routine_one() and self.routine_two():
                break
        else:
            raise RuntimeError("Hungarian method: no solution after MAX_ROUNDS rounds")
        rows = [[j for j in range(self.n) if self.q[i][j] == STAR] for i in range(self.m)]
        cols = [[i for i in range(self.m) if self.q[i][j] == STAR] for j in range(self.n)]
        if any(len(s) != 1 for s in rows) or any(len(s) > 1 for s in cols):
            raise RuntimeError("Hungarian method: infeasible assignment")  # the tool asserts here
        return [s[0] for s in rows]


def hungarian_max(rating):
    """Column assigned to each row of an (m, n) rating matrix, m <= n, as hungarian_solve(HUNGARIAN_MAX)
    assigns it: a largest total rating, except where the tool's method stops short (module docstring).
    Returns a list of m column indices."""
    problem = _Problem(rating)
    if problem.m > problem.n:
        raise ValueError(f"hungarian_max needs no more rows than columns, got {problem.m} x {problem.n}")
    if problem.m == 0:
        return []
    row = problem.r[0]
    if problem.m == 1 and min(row) >= 0:
        # What solve() returns for one row of ratings >= 0: make_cover covers it by its maximum (the
        # row's total <= the columns'), add_stars stars the first tight cell, and no path can move
        # a lone row's 1*.
        top = 0.0
        for x in row:
            if x > top:
                top = x
        return [next(j for j, x in enumerate(row) if abs(top - x) < EPS)]
    return problem.solve()
