"""lib/utils/prefetch.py: results in order, bounded look-ahead, errors per item, clean stop."""
import threading
import time

import pytest

from lib.utils.prefetch import prefetched


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_results_come_in_order_with_errors_per_item(workers):
    def fn(k):
        time.sleep(0.002 * (k % 3))  # later items may finish first
        if k == 4:
            raise ValueError("four")
        return k * k

    out = [(k, r, str(e) if e else None) for k, r, e in prefetched(fn, range(8), workers, errors=(ValueError,))]
    assert out == [(k, None, "four") if k == 4 else (k, k * k, None) for k in range(8)]


def test_other_errors_are_raised():
    with pytest.raises(KeyError):
        list(prefetched(lambda k: {}[k], range(3), 2, errors=(ValueError,)))


def test_look_ahead_is_bounded_and_the_work_overlaps():
    started, lock = [], threading.Lock()

    def fn(k):
        with lock:
            started.append(k)
        return k

    seen = []
    for k, _, _ in prefetched(fn, range(20), workers=2, depth=3):
        time.sleep(0.05)  # the caller is slow: the workers run ahead, but never more than depth items
        with lock:
            seen.append(len(started) - k - 1)
    assert max(seen) <= 3 and max(seen) >= 2


def test_leaving_early_starts_nothing_more():
    started = []
    gen = prefetched(lambda k: started.append(k) or k, range(1000), workers=2, depth=4)
    assert next(gen)[0] == 0
    gen.close()
    assert len(started) <= 6 and threading.active_count() < 10


def test_bad_arguments():
    with pytest.raises(ValueError):
        list(prefetched(abs, [1], -1))
    with pytest.raises(ValueError):
        list(prefetched(abs, [1], 1, depth=0))
