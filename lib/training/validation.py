"""Validation during training (a hook): the WIDER val AP (easy, medium, hard) of the network being
trained, every N steps, by eval.py's detection and the official evaluation restricted to the images
validated (docs/training.md §4.6).

Detection runs on a copy of the network: model.detector.Detector puts its network in eval mode and
channels_last memory, and the copy keeps that away from the training network. Nothing of the training
(weights, gradients, optimizer, RNG, data order) is read or changed otherwise, so a run trains bit for
bit the same with validation as without. In a process group every rank detects a share of the images
(balanced by pixels, lib.detection_job.balanced_shares) and rank 0 gathers, writes and scores them.
"""
import copy
import time
from pathlib import Path

import torch.distributed as dist

from lib.detection_job import balanced_shares
from lib.detection_run import default_workers
from lib.evaluation.ground_truth import save_ground_truth
from lib.evaluation.run import detect_images, score_images
from lib.image_io import image_size
from lib.training.trainer import HookBase
from lib.utils.distributed import broadcast_from_rank0, gather_on_rank0, results_group


def val_subset(names, count):
    """`count` of `names` spread evenly over them, in their order (WIDER val's split file runs event by
    event, so every event is represented); all of them when `count` is 0 or at least len(names)."""
    if count == 0 or count >= len(names):
        return list(names)
    return [names[i * len(names) // count] for i in range(count)]


def image_shares(names, image_root, world_size):
    """For each rank, its names of `names`: balanced by pixel count (read from the image headers)."""
    costs = [width * height for width, height in (image_size(image_root / name) for name in names)]
    return [[names[i] for i in share] for share in balanced_shares(costs, world_size)]


class ValidationScore:
    """Rank 0's scoring of a validation, callable({name: (N, 5) detections}) -> {setting: AP}: the
    prediction files go to `<folder>/detections` (those of the last validation) and are evaluated
    against `gt` (a GroundTruth of the images validated, e.g. GroundTruth.subset); at the first call
    `gt` is also written to `<folder>/ground_truth` as the official tool's .mat files, so that
    `eval.py --predictions <folder>/detections --gt <folder>/ground_truth`, or the MATLAB tool,
    reproduces the numbers."""

    def __init__(self, gt, folder):
        self.gt = gt
        self.folder = Path(folder)
        self._saved = False

    def __call__(self, dets):
        if not self._saved:
            save_ground_truth(self.gt, self.folder / "ground_truth")
            self._saved = True
        return score_images(dets, self.gt, self.folder / "detections")


class Validation(HookBase):
    """Hook of every rank: every `every` steps and after the last one, the AP of the network on WIDER val
    images, as trainer.val_ap ({"easy": AP, "medium": ..., "hard": ...}) for the hooks registered after
    this one (MetricsLog, ProgressBar, TensorBoard), and None at the other steps.

    net: the training network; make_detector: callable(network copy) -> model.detector.Detector (the
    TEST config of the run); names: this rank's images `<event>/<image>.jpg` under `image_root`;
    score: on rank 0, callable({name: (N, 5) detections} of all ranks) -> {setting: AP}
    (ValidationScore), None on the others. The seconds spent are left out of the next step's speed (Trainer.discount).
    """

    def __init__(self, net, make_detector, names, image_root, every, score=None, workers=None):
        self.net = net
        self.make_detector = make_detector
        self.names = list(names)
        self.image_root = image_root
        self.every = every
        self.score = score
        self.workers = default_workers() if workers is None else workers
        self._group = None

    def before_train(self):
        if dist.is_available() and dist.is_initialized():
            self._group = results_group()

    def before_step(self):
        self.trainer.val_ap = None

    def after_step(self):
        trainer = self.trainer
        if trainer.iter % self.every and trainer.iter != trainer.max_iters:
            return
        start = time.perf_counter()
        trainer.val_ap = self.validate()
        trainer.val_seconds = time.perf_counter() - start
        trainer.discount(trainer.val_seconds)

    def validate(self):
        """{setting: AP} of the network now on every rank's images (rank 0 scores them; the others get
        its numbers)."""
        detector = self.make_detector(copy.deepcopy(self.net))
        dets = detect_images(detector, self.names, self.image_root, self.workers)
        if self._group is None:
            return self.score(dets)
        shares = gather_on_rank0(dets, self._group, "gathering the validation detections")
        ap = None if shares is None else self.score({name: d for share in shares for name, d in share.items()})
        return broadcast_from_rank0(ap, self._group, "sharing the validation AP")
