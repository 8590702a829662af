"""Training images, sampling order and DataLoader (official lib/roi_data_layer/{layer,minibatch}.py).

One image per item (IMS_PER_BATCH 1): the DataLoader runs without automatic batching, so each
worker decodes, flips, mean-subtracts and resizes whole images. An image that cannot be read
travels as an error item, so the training process raises the one-line ImageError itself
(`raise_item_errors`) instead of the DataLoader's re-raise with the worker's traceback text.
"""
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lib.blob import compute_scale, prep_image, to_tensor
from lib.image_io import ImageError, read_image


class TrainDataset(Dataset):
    """Network inputs of a roidb at one training scale.

    Item i: {"data": (3, H, W) float32 BGR mean-subtracted blob, "im_info": (3,) float32
    [H, W, s], "gt_boxes": (M, 4) float32 boxes * s (not rounded), "index": i}, or
    {"error": message, "index": i} when the image is missing, undecodable or of another size
    than the roidb says.
    s brings the shorter side to `scale` unless the longer side would exceed `max_size`;
    with `orig_size` s starts at 1 and is still bounded by `max_size`, as in the official
    prep_im_for_blob.
    """

    def __init__(self, roidb, scale, max_size, pixel_means, orig_size=False):
        self.roidb = roidb
        self.scale = scale
        self.max_size = max_size
        self.pixel_means = np.asarray(pixel_means, dtype=np.float32).reshape(3)
        self.orig_size = orig_size

    def __len__(self):
        return len(self.roidb)

    def __getitem__(self, i):
        entry = self.roidb[i]
        try:
            image = read_image(entry.image)
        except ImageError as e:
            return {"error": str(e), "index": i}
        if image.shape[:2] != (entry.height, entry.width):
            return {"error": f"{entry.image}: image is {image.shape[1]}x{image.shape[0]}, "
                             f"the roidb says {entry.width}x{entry.height}", "index": i}
        if entry.flipped:
            image = image[:, ::-1]
        target = min(entry.height, entry.width) if self.orig_size else self.scale
        s = compute_scale(entry.height, entry.width, target, self.max_size)
        blob = prep_image(image, self.pixel_means, s)
        # float64 product then float32, as the official float64 roidb boxes.
        gt_boxes = (entry.boxes.astype(np.float64) * s).astype(np.float32)
        return {
            "data": to_tensor(blob)[0],
            "im_info": torch.tensor([blob.shape[0], blob.shape[1], s], dtype=torch.float32),
            "gt_boxes": torch.from_numpy(gt_boxes),
            "index": i,
        }


class EpochSampler(Sampler):
    """Infinite stream of dataset indices, one seeded random permutation per epoch.

    Epoch e uses torch.randperm(num_items) from a generator seeded with seed + e. Rank r of
    `world_size` takes permutation positions r, r + W, r + 2W, ..., so that step t of all ranks
    together covers permutation[t*W : (t+1)*W]; the last num_items % W positions are dropped, so
    every rank yields `epoch_length` = num_items // W items per epoch.

    The official per-GPU data layers shuffle independently (with aspect grouping, which is
    irrelevant at one image per forward); one shared permutation instead gives every rank
    disjoint images at each step.

    Exact resume: a DataLoader with workers prefetches ahead of the trainer, so the trainer must
    count the items it has *consumed* on this rank and rebuild the sampler with `start` = that
    count; iteration then continues with the item that would have come next.
    """

    def __init__(self, num_items, seed, rank=0, world_size=1, start=0):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size = {world_size})")
        if num_items < world_size:
            raise ValueError(f"{num_items} items cannot be shared by {world_size} ranks")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.num_items = num_items
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.epoch_length = num_items // world_size

    def permutation(self, epoch):
        """(num_items,) int64 permutation of `epoch`, shared by all ranks."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_items, generator=generator)

    def epoch_indices(self, epoch):
        """(epoch_length,) int64 indices this rank visits in `epoch`, in order."""
        stop = self.epoch_length * self.world_size
        return self.permutation(epoch)[self.rank:stop:self.world_size]

    def __iter__(self):
        epoch, offset = divmod(self.start, self.epoch_length)
        while True:
            yield from self.epoch_indices(epoch)[offset:].tolist()
            epoch, offset = epoch + 1, 0


def raise_item_errors(items):
    """Yield the TrainDataset `items`, raising ImageError (in this process) at the first error item."""
    for item in items:
        if "error" in item:
            raise ImageError(item["error"])
        yield item


def _init_worker(worker_id):
    """Workers provide the parallelism; OpenCV's own thread pool would oversubscribe the cores."""
    cv2.setNumThreads(0)


def make_loader(dataset, sampler, workers, pin_memory):
    """DataLoader yielding one dataset item at a time (batch_size=None) in `sampler` order.

    With `workers` > 0, images are decoded and resized in persistent worker processes.
    """
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        worker_init_fn=_init_worker if workers > 0 else None,
    )
