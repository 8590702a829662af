"""Whether a training snapshot can continue exactly here: on this number of processes, and from the same
iteration on every rank (docs/training.md §4.4)."""
from lib.utils.distributed import max_over_ranks, split_iter_size


def _processes(counts):
    """'1 process', '3 processes', '1, 2 or 4 processes' of a list of process counts."""
    words = [str(n) for n in counts]
    listed = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
    return f"{listed} process" + ("" if counts == [1] else "es")


def resume_split_error(saved_world_size, iter_size, world_size, num_items):
    """Why a snapshot of `saved_world_size` processes cannot continue exactly on `world_size`, or None.

    Exact when every SGD step keeps its images (split_iter_size(iter_size, ...) x processes) and
    every epoch drops the same last num_items % processes items of its permutation (EpochSampler),
    so the steps see the same images in the same order of steps.
    """
    def images(w):
        return split_iter_size(iter_size, w) * w

    saved = images(saved_world_size)
    fits = [w for w in range(1, min(saved, num_items) + 1)
            if images(w) == saved and num_items % w == num_items % saved_world_size]
    if world_size in fits:
        return None
    remedy = f"; resume it on {_processes(fits)}" if fits else ""
    if images(world_size) != saved:
        return (f"it was trained with {saved} images per SGD step ({saved_world_size} x "
                f"{split_iter_size(iter_size, saved_world_size)}, TRAIN.ITER_SIZE {iter_size}) and "
                f"{_processes([world_size])} would take {images(world_size)}, so the run would not continue the same "
                f"training{remedy}")
    return (f"its run dropped the last {num_items % saved_world_size} of the {num_items} training items of each "
            f"epoch and {_processes([world_size])} would drop {num_items % world_size}, so the order of the images "
            f"would change{remedy}")


def agree_on_start(start_iter, device):
    """ValueError unless every rank starts at `start_iter` (a machine that sees another --out would diverge)."""
    high, minus_low = max_over_ranks([start_iter, -start_iter], device, "agreeing on the iteration to start from")
    if high != -minus_low:
        raise ValueError(f"the processes would start from different iterations ({-minus_low} .. {high}): every "
                         "machine must see the same --out folder and snapshots")
