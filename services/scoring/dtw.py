"""Dynamic time warping in numpy, with a row-vectorised recursion.

The recursion `D[i,j] = C[i,j] + min(D[i-1,j-1], D[i-1,j], D[i,j-1])` has a
left-to-right dependency inside each row; writing `base[j] = C[i,j] +
min(D[i-1,j-1], D[i-1,j])` and `S` for the row's cumulative cost turns it into
`D[i,j] = S[j] + min_{k<=j}(base[k] - S[k])`, one `minimum.accumulate` per row,
so a 500 x 500 alignment takes milliseconds without a JIT (librosa's DTW
needs numba, whose first compilation costs seconds per process).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def accumulated_cost(cost: FloatArray) -> FloatArray:
    """D with D[0,0] = C[0,0], steps (1,1), (1,0), (0,1)."""
    n, m = cost.shape
    acc = np.empty((n, m))
    acc[0] = np.cumsum(cost[0])
    for i in range(1, n):
        prev = acc[i - 1]
        base = cost[i].copy()
        base[0] += prev[0]
        base[1:] += np.minimum(prev[:-1], prev[1:])
        cumulative = np.cumsum(cost[i])
        acc[i] = cumulative + np.minimum.accumulate(base - cumulative)
    return acc


def warping_path(cost: FloatArray) -> IntArray:
    """The optimal path from (0, 0) to (n-1, m-1) as an array of (i, j) rows."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros((0, 2), dtype=np.int64)
    acc = accumulated_cost(cost)
    i, j = n - 1, m - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            options = (acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
            step = int(np.argmin(options))
            if step == 0:
                i, j = i - 1, j - 1
            elif step == 1:
                i -= 1
            else:
                j -= 1
        path.append((i, j))
    path.reverse()
    return np.asarray(path, dtype=np.int64)


def euclidean_cost(a: FloatArray, b: FloatArray) -> FloatArray:
    """Pairwise Euclidean distances between the rows of a (n, d) and b (m, d)."""
    sq = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2.0 * a @ b.T
    out: FloatArray = np.sqrt(np.maximum(sq, 0.0))
    return out


def align_features(a: FloatArray, b: FloatArray, *, max_cells: int = 2_500_000) -> IntArray:
    """DTW path between two feature sequences (frames in rows), decimating very long inputs.

    When n * m exceeds `max_cells` both sequences are decimated by the same
    factor and the path is mapped back to full-rate indices, bounding time
    and memory for long recordings.
    """
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return np.zeros((0, 2), dtype=np.int64)
    step = max(1, int(np.ceil(np.sqrt(n * m / max_cells))))
    path = warping_path(euclidean_cost(a[::step], b[::step]))
    if step == 1:
        return path
    full = np.minimum(path * step, [n - 1, m - 1])
    return np.asarray(full, dtype=np.int64)


def map_times(path: IntArray, n_from: int) -> FloatArray:
    """For each frame of the first sequence, the mean matched frame index of the second."""
    if len(path) == 0:
        return np.zeros(n_from)
    sums = np.bincount(path[:, 0], weights=path[:, 1], minlength=n_from)
    counts = np.bincount(path[:, 0], minlength=n_from)
    out = np.interp(np.arange(n_from), np.flatnonzero(counts), sums[counts > 0] / counts[counts > 0])
    return np.asarray(out, dtype=np.float64)
