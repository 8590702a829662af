"""Stopping a training run between steps: Ctrl-C, SIGTERM and SIGUSR1 become stop requests (a hook).

Ctrl-C (SIGINT) asks for a "stopped" run, SIGTERM and SIGUSR1 (torchrun stopping its workers, SLURM
ahead of a time limit or preemption with `--signal USR1@SECONDS`) for a "preempted" one. The step in
progress finishes; the Checkpointer then snapshots it. In a process group the strongest request of
any rank stops every rank after the same step.
"""
import os
import signal
import sys

from lib.training.trainer import HookBase
from lib.utils.distributed import max_over_ranks

# Why a run stops early, weakest first: when ranks differ, the strongest is everyone's.
STOP_REASONS = (None, "stopped", "preempted")
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopOnSignals:
    """Context manager turning Ctrl-C (SIGINT) into a "stopped" request and SIGTERM / SIGUSR1 into a
    "preempted" one; calling it gives the strongest request so far (None: none).

    A second Ctrl-C interrupts at once; a repeated SIGTERM (torchrun and SLURM may follow up) changes
    nothing. DataLoader workers forked inside the block inherit the handlers, which do nothing
    outside the owning process, so they keep serving the iteration in progress. Must be entered in
    the main thread.
    """

    def __enter__(self):
        self.reason = None
        self._seen = set()
        self._pid = os.getpid()
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, *PREEMPTION_SIGNALS)}
        return self

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:
            return
        if signum in self._seen:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self._seen.add(signum)
        reason = "stopped" if signum == signal.SIGINT else "preempted"
        self.reason = max(self.reason, reason, key=STOP_REASONS.index)
        print("\nCtrl-C: stopping after this iteration and saving a snapshot (press again to abort)."
              if signum == signal.SIGINT else
              f"\n{signal.Signals(signum).name}: preempted, stopping after this iteration and saving a snapshot.",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def __call__(self):
        return self.reason


def strongest_over_ranks(reason, device):
    """The strongest stop reason (STOP_REASONS) over all ranks of the process group, given this rank's."""
    (index,) = max_over_ranks([STOP_REASONS.index(reason)], device, "agreeing whether to stop")
    return STOP_REASONS[index]


class StopRequests(HookBase):
    """Hook: the signal handlers of StopOnSignals while the run lasts (installed before the data loader
    forks, restored after the last snapshot), asked before each step.

    device: in a process group, the device of this rank's collectives; the ranks then all-reduce
    their requests before every step (one collective per step on every rank). None: one process.
    Register it first, so that a stop comes before anything else of the step.
    """

    def __init__(self, device=None):
        self.device = device
        self._signals = None

    def before_train(self):
        self._signals = StopOnSignals().__enter__()

    def before_step(self):
        reason = self._signals()
        if self.device is not None:
            reason = strongest_over_ranks(reason, self.device)
        self.trainer.request_stop(reason)

    def after_train(self):
        if self._signals is not None:
            self._signals.__exit__(None, None, None)
            self._signals = None
