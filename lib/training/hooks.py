"""Small training hooks: the learning-rate schedule, the reports of a non-finite loss and of a lost peer, and
the ranks' wait for rank 0's snapshots and pictures.

The others have their own files: signals.py (stop requests), checkpointer.py (snapshots),
metrics.py (metrics.jsonl, loss_curve.png), progress.py (the console), tensorboard.py.
"""
from lib.training.step import NonFiniteLoss
from lib.training.trainer import HookBase
from lib.utils.distributed import PeerFailure, failure_message, lost_ranks, results_group, wait_for_ranks


class LRSchedule(HookBase):
    """Hook: before each step, the base lr of `schedule` (lib/solver.StepLR: lr(it) of the 0-based step
    `it`) through CaffeSGD.set_base_lr, which applies each group's lr_mult; sets trainer.lr."""

    def __init__(self, schedule):
        self.schedule = schedule

    def before_step(self):
        trainer = self.trainer
        trainer.lr = self.schedule(trainer.iter)
        trainer.optimizer.set_base_lr(trainer.lr)


class NonFiniteGuard(HookBase):
    """Hook: a NaN or infinite loss (NonFiniteLoss, raised by train_step before the optimizer step, so
    the weights are the last good ones) ends the run with a message naming the step and the last good
    snapshot (trainer.last_snapshot). No snapshot is written."""

    def after_train(self):
        error = self.trainer.error
        if isinstance(error, NonFiniteLoss):
            last = self.trainer.last_snapshot
            kept = f"the last good snapshot is {last}" if last else "no snapshot was written"
            self.trainer.error = NonFiniteLoss(f"non-finite loss at {error}; training stopped, {kept}")


class PeerFailureReport(HookBase):
    """Hook of every rank in a process group: a failed collective (PeerFailure) ends the run with a
    message naming the lost ranks, asked of the rendezvous `store` for up to min(5, timeout) seconds
    (lib/utils/distributed.lost_ranks). Register it after the Checkpointer: its after_train runs
    first, so rank 0 saves the last completed step after the question."""

    def __init__(self, store, rank, world_size, timeout):
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self.timeout = timeout

    def after_train(self):
        error = self.trainer.error
        if isinstance(error, PeerFailure):
            lost = lost_ranks(self.store, self.rank, self.world_size, min(5.0, self.timeout))
            self.trainer.error = PeerFailure(failure_message(self.rank, lost, error))


class RankSync(HookBase):
    """Hook of every rank in a process group, registered after the hooks of rank 0's outputs: every `every`
    steps (TRAIN.SNAPSHOT), once rank 0 has written the step's snapshot and drawn its TensorBoard pictures
    (tens of seconds at the TEST scale on a CPU), the ranks wait for each other in a group of their own
    (lib.utils.distributed.results_group) instead of in the next step's all-reduce, whose --timeout
    those seconds could exceed."""

    def __init__(self, every):
        self.every = every
        self._group = None

    def before_train(self):
        self._group = results_group()

    def after_step(self):
        if self.trainer.iter % self.every == 0:
            wait_for_ranks(self._group, "waiting for rank 0's snapshot and pictures")
