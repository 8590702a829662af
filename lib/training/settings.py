"""The training recipe as plain values (official SSH/train.py and solver_ssh.prototxt; lib/config.py)."""
from dataclasses import dataclass

import numpy as np

from lib.losses import LossSettings


@dataclass(frozen=True)
class TrainSettings:
    """The training recipe `fit` follows (official SSH/train.py and solver_ssh.prototxt; lib/config.py).

    Data: the image's shorter side goes to scales[0], its longer side to at most max_size (the
    original size with orig_size), minus pixel_means (B, G, R); rng_seed shuffles the epochs.
    Solver: iter_size images per SGD step, Caffe SGD with base_lr, momentum, weight_decay, lr
    multiplied by gamma every stepsize steps. A snapshot every `snapshot` steps, named with
    snapshot_infix; a log line every `display` steps. losses: the anchor-target settings.
    """

    scales: tuple
    max_size: int
    orig_size: bool
    pixel_means: tuple
    rng_seed: int
    iter_size: int
    base_lr: float
    momentum: float
    weight_decay: float
    gamma: float
    stepsize: int
    snapshot: int
    snapshot_infix: str
    display: int
    losses: LossSettings

    @classmethod
    def from_config(cls, cfg):
        """The settings of `cfg.TRAIN`, PIXEL_MEANS and RNG_SEED (lib/config.py)."""
        train = cfg.TRAIN
        return cls(scales=tuple(train.SCALES), max_size=train.MAX_SIZE, orig_size=train.ORIG_SIZE,
                   pixel_means=tuple(float(v) for v in np.ravel(cfg.PIXEL_MEANS)), rng_seed=cfg.RNG_SEED,
                   iter_size=train.ITER_SIZE, base_lr=train.BASE_LR, momentum=train.MOMENTUM,
                   weight_decay=train.WEIGHT_DECAY, gamma=train.GAMMA, stepsize=train.STEPSIZE,
                   snapshot=train.SNAPSHOT, snapshot_infix=train.SNAPSHOT_INFIX, display=train.DISPLAY,
                   losses=LossSettings.from_config(cfg))
