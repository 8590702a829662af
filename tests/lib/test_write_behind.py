"""lib/utils/write_behind.py: calls in order on one thread, bounded, drained on exit, errors passed on."""
import threading
import time

import pytest

from lib.utils.write_behind import WriteBehind


@pytest.mark.parametrize("enabled", [False, True])
def test_calls_run_in_order_and_all_before_the_block_ends(enabled):
    done, threads = [], set()

    def write(k):
        time.sleep(0.001 * (k % 3))
        threads.add(threading.current_thread().name)
        done.append(k)

    with WriteBehind(enabled) as writer:
        for k in range(20):
            writer.submit(write, k)
    assert done == list(range(20))
    assert threads == ({"write-behind"} if enabled else {threading.main_thread().name})


def test_waiting_calls_are_bounded_by_depth():
    """The caller blocks once `depth` calls wait behind the one running: memory does not grow."""
    outstanding, peak, lock = [0], [0], threading.Lock()

    def write(_):
        time.sleep(0.01)
        with lock:
            outstanding[0] -= 1

    with WriteBehind(depth=2) as writer:
        for k in range(15):
            with lock:
                outstanding[0] += 1
                peak[0] = max(peak[0], outstanding[0])
            writer.submit(write, k)
    assert peak[0] <= 2 + 1 + 1  # waiting + running + the one being submitted
    assert peak[0] >= 3  # the writer did lag behind: the bound was reached


def test_the_first_error_reaches_the_caller_and_later_calls_do_not_run():
    done = []

    def write(k):
        if k == 2:
            raise OSError(28, "No space left on device")
        done.append(k)

    with pytest.raises(OSError, match="No space left"):
        with WriteBehind() as writer:
            for k in range(6):
                writer.submit(write, k)
                time.sleep(0.01)
    assert done == [0, 1]


def test_ctrl_c_in_the_caller_still_writes_what_was_handed_over():
    done = []

    def write(k):
        time.sleep(0.02)
        done.append(k)

    with pytest.raises(KeyboardInterrupt):
        with WriteBehind(depth=3) as writer:
            for k in range(4):
                writer.submit(write, k)
            raise KeyboardInterrupt
    assert done == [0, 1, 2, 3]


def test_a_depth_below_one_is_refused():
    with pytest.raises(ValueError, match="depth must be 1 or more, got 0"):
        WriteBehind(depth=0)
