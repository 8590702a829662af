"""Batching an iterable (itertools.batched arrives with Python 3.12)."""


def batched(iterable, size):
    """Lists of `size` consecutive items of `iterable` (the last one may be shorter)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
