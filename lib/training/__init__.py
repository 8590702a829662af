"""SSH training (official SSH/train.py, main_train.py and Caffe's solver loop): a Trainer running SGD steps
with hooks, in the manner of detectron2's engine.

    step.py          one SGD step over iter_size images (train_step, image_losses, amp_dtype)
    trainer.py       HookBase and Trainer: the loop, the order of the hooks, what they share
    hooks.py         LRSchedule, NonFiniteGuard, PeerFailureReport, RankSync
    signals.py       StopRequests: Ctrl-C, SIGTERM, SIGUSR1 become stop requests (all ranks agree)
    checkpointer.py  Checkpointer: kept snapshots, <prefix>_latest.pth, the last step on stop or failure
    metrics.py       MetricsLog: metrics.jsonl and loss_curve.png
    progress.py      ProgressBar: the tqdm bar and the TRAIN.DISPLAY log lines
    tensorboard.py   TensorBoard: curves and detection pictures in <out>/tb
    preview.py       DetectionPreview: detections on a few fixed val photos
    validation.py    Validation: the WIDER val AP of the network every N steps
    resume.py        whether a snapshot continues exactly on this number of processes
    settings.py      TrainSettings: the recipe as plain values
    run.py           fit: the solver, the data, the trainer and its hooks for one run
    cli.py           the command line of train.py and train_dist.py
"""
from lib.training.checkpointer import Checkpointer, LatestCadence, snapshot_prefix
from lib.training.hooks import LRSchedule, NonFiniteGuard, PeerFailureReport, RankSync
from lib.training.metrics import MetricsLog, drop_torn_line, read_metrics
from lib.training.progress import ProgressBar
from lib.training.resume import resume_split_error
from lib.training.run import fit, seed_everything
from lib.training.settings import TrainSettings
from lib.training.signals import StopOnSignals, StopRequests
from lib.training.step import NonFiniteLoss, amp_dtype, image_losses, train_step
from lib.training.tensorboard import TensorBoard
from lib.training.trainer import HookBase, Trainer

__all__ = [
    "Checkpointer", "LatestCadence", "snapshot_prefix", "LRSchedule", "NonFiniteGuard", "PeerFailureReport", "RankSync",
    "MetricsLog", "drop_torn_line", "read_metrics", "ProgressBar", "resume_split_error",
    "fit", "seed_everything", "TrainSettings", "StopOnSignals", "StopRequests", "NonFiniteLoss", "amp_dtype",
    "image_losses", "train_step", "TensorBoard", "HookBase", "Trainer",
]
