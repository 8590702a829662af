"""The training loop and its hooks, in the manner of detectron2's engine (train_loop.py: HookBase,
TrainerBase, SimpleTrainer).

The Trainer runs the SGD steps (step.py's train_step, unchanged); everything around them (the lr
schedule, snapshots, logs, TensorBoard, stop requests, error reports) is a hook. Hooks talk to each
other only through the trainer's attributes.
"""
import time
from itertools import islice

from lib.training.step import NonFiniteLoss, train_step


class HookBase:
    """Something done around the steps of a Trainer; `trainer` is set when the hook is registered.

    before_train runs once before the first step, after_train once at the end, also when the run
    fails (trainer.error then holds the exception; the hook may replace it, e.g. by one with a
    better message) or when before_train of another hook failed. before_step and after_step run
    around every step; after_step sees trainer.iter = the steps completed, the one just done included.
    """

    trainer = None

    def before_train(self):
        pass

    def after_train(self):
        pass

    def before_step(self):
        pass

    def after_step(self):
        pass


class Trainer:
    """SGD steps start_iter .. max_iters - 1 of `optimizer`, iter_size items each, with hooks.

    start(): called once, after the hooks' before_train, returns the iterator of training items
    (a DataLoader's workers fork then, inheriting the signal handlers a hook installed). loss_fn,
    scaler, average: as train_step's. Hooks run before_train, before_step and after_step in the
    order they were registered and after_train in reverse order, as nested `with` blocks would: the
    first registered is set up first and torn down last. A hook stops the run with request_stop(reason)
    ("stopped", "preempted"), asked before each step: the remaining before_step hooks and the step
    are then skipped.

    What the hooks read (and some set): iter (steps completed), start_iter, max_iters, iter_size
    (items per step in this process), images_per_step (in all processes), optimizer, lr (the base lr
    of the step, set by the LRSchedule hook), losses ({name: float} means of the last step),
    data_seconds (waiting for the last step's items), step_seconds (wall time from the end of the
    step before, or the start, to the end of the last step: hooks included, validation not), stop_reason (None or the
    request), error (the exception ending the run, or None), last_snapshot (path of the newest snapshot
    written or resumed from, None: none), saved_iter (the iteration of the last kept snapshot, or
    start_iter), val_ap ({setting: AP} of a validation at the last step, else None) and val_seconds
    (the time it took; both set by the Validation hook).
    """

    def __init__(self, optimizer, start, loss_fn, *, start_iter, max_iters, iter_size, images_per_step=None,
                 scaler=None, average=None):
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.scaler = scaler
        self.average = average
        self.start_iter = self.iter = self.saved_iter = start_iter
        self.max_iters = max_iters
        self.iter_size = iter_size
        self.images_per_step = iter_size if images_per_step is None else images_per_step
        self.lr = None
        self.losses = {}
        self.data_seconds = self.step_seconds = 0.0
        self.stop_reason = None
        self.error = None
        self.last_snapshot = None
        self.val_ap = None
        self.val_seconds = 0.0
        self._start = start
        self._items = None
        self._tick = None
        self._hooks = []

    def register(self, *hooks):
        """Add hooks (None entries are skipped), run after those registered before."""
        for hook in hooks:
            if hook is not None:
                hook.trainer = self
                self._hooks.append(hook)

    def request_stop(self, reason):
        """Stop before the next step for `reason` ("stopped", "preempted"); None asks nothing."""
        if reason and not self.stop_reason:
            self.stop_reason = reason

    def discount(self, seconds):
        """Leave `seconds` a hook spent (a validation) out of the next step's step_seconds: it is no
        part of the training speed."""
        self._tick += seconds

    def train(self):
        """Run the hooks and the steps; returns (steps completed, "done" or the stop reason).

        Raises the run's error (trainer.error, as the hooks left it) after every after_train has run;
        an error of an after_train becomes the run's error when there was none.
        """
        try:
            for hook in self._hooks:
                hook.before_train()
            self._items = self._start()
            self._tick = time.perf_counter()
            while self.iter < self.max_iters and not self._stop_requested():
                self.run_step()
                for hook in self._hooks:
                    hook.after_step()
        except BaseException as e:
            self.error = e
        for hook in reversed(self._hooks):
            try:
                hook.after_train()
            except BaseException as e:
                if self.error is None:
                    self.error = e
        if self.error is not None:
            raise self.error
        return self.iter, self.stop_reason or "done"

    def _stop_requested(self):
        """Run the before_step hooks until one requests a stop; True when one did."""
        for hook in self._hooks:
            hook.before_step()
            if self.stop_reason:
                return True
        return False

    def run_step(self):
        """One SGD step (train_step) over the next iter_size items."""
        start = time.perf_counter()
        batch = list(islice(self._items, self.iter_size))
        self.data_seconds = time.perf_counter() - start
        if len(batch) != self.iter_size:
            raise RuntimeError(f"the training items ran out at iteration {self.iter + 1}")
        try:
            self.losses = train_step(self.optimizer, batch, self.loss_fn, self.scaler, self.average)
        except NonFiniteLoss as e:
            raise NonFiniteLoss(f"iteration {self.iter + 1}: {e}") from None
        self.iter += 1
        now = time.perf_counter()
        self.step_seconds, self._tick = now - self._tick, now
