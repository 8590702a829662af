"""Work on the next items in background threads while the caller uses the current one, in order.

Detection spends its CPU time in two halves: reading and preparing an image (JPEG decoding, EXIF,
float conversion and resizing: OpenCV and numpy, which release the GIL) and the network. `prefetched`
runs the first half of the coming items on worker threads, at most `depth` items ahead, so memory
stays bounded whatever the number of items, and yields the results in the items' order.
"""
import itertools
from collections import deque
from concurrent.futures import ThreadPoolExecutor


def prefetched(fn, items, workers, depth=None, errors=(Exception,)):
    """(item, fn(item), None) or (item, None, error) for each item of the iterable `items`, in order.

    fn runs on `workers` threads (0: in the caller, one item at a time, as a plain loop) for at most
    `depth` items ahead of the one yielded (default 2 x workers). An exception of the classes
    `errors` raised by fn is yielded for its item; any other one is raised. Leaving the generator
    (Ctrl-C, an error, `close`) cancels the items not started and waits for those running.
    """
    if workers < 0 or (depth is not None and depth < 1):
        raise ValueError(f"workers must be 0 or more and depth 1 or more, got {workers} and {depth}")

    def call(item):
        try:
            return item, fn(item), None
        except errors as e:
            return item, None, e

    if workers == 0:
        yield from map(call, items)
        return
    items = iter(items)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="prefetch")
    try:
        pending = deque(pool.submit(call, item) for item in itertools.islice(items, depth or 2 * workers))
        while pending:
            done = pending.popleft().result()
            pending.extend(pool.submit(call, item) for item in itertools.islice(items, 1))
            yield done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
