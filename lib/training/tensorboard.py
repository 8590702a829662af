"""TensorBoard curves of a training run (a hook): torch.utils.tensorboard event files in `<out>/tb`.

Scalars of every step, at global step = the steps completed (metrics.jsonl's "iteration"):
    loss/total, loss/m1_cls, loss/m1_reg, ... loss/m3_reg   the sum and the six losses (mean of the step)
    lr                                                      the base learning rate of the step
    grad_norm                                               L2 norm of the (averaged) gradients it used
    time/images_per_s, time/step_s                          speed: images per second, wall seconds per step
    time/data_wait_s                                        seconds the step waited for its images
and at the steps validated (Validation hook)
    val/ap_easy, val/ap_medium, val/ap_hard                 WIDER val AP of the images validated
    time/val_s                                              seconds the validation took
and every `preview_every` steps the images detections/0, detections/1, ... (lib/training/preview.py).
Each step's events are flushed as the step ends, before any snapshot of it is written; a run that
resumes at iteration N purges every event from step N + 1 on (SummaryWriter's purge_step), so after
any number of kills and restarts each step is shown once, as computed by the run that continued.
"""
from pathlib import Path

from lib.training.step import gradient_norm
from lib.training.trainer import HookBase


def loss_tag(name):
    """TensorBoard tag of a loss: "m1@ssh_cls_loss" -> "loss/m1_cls" ('@' is not allowed in tags)."""
    module, _, kind = name.partition("@ssh_")
    return f"loss/{module}_{kind.removesuffix('_loss')}" if kind else f"loss/{name}"


class TensorBoard(HookBase):
    """Hook of the process that writes the outputs: the event files in `log_dir`.

    preview: None, or a callable giving H x W x 3 RGB uint8 pictures (DetectionPreview bound to the
    network), logged every `preview_every` steps.
    """

    def __init__(self, log_dir, preview=None, preview_every=0):
        self.log_dir = Path(log_dir)
        self.preview = preview
        self.preview_every = preview_every
        self._writer = None

    def before_train(self):
        from torch.utils.tensorboard import SummaryWriter  # a missing package fails here, not at import

        self._writer = SummaryWriter(str(self.log_dir), purge_step=self.trainer.start_iter + 1)

    def after_step(self):
        trainer, writer = self.trainer, self._writer
        step = trainer.iter
        writer.add_scalar("loss/total", sum(trainer.losses.values()), step)
        for name, value in trainer.losses.items():
            writer.add_scalar(loss_tag(name), value, step)
        writer.add_scalar("lr", trainer.lr, step)
        writer.add_scalar("grad_norm", gradient_norm(trainer.optimizer), step)
        writer.add_scalar("time/images_per_s", trainer.images_per_step / max(trainer.step_seconds, 1e-9), step)
        writer.add_scalar("time/step_s", trainer.step_seconds, step)
        writer.add_scalar("time/data_wait_s", trainer.data_seconds, step)
        if trainer.val_ap is not None:
            for setting, ap in trainer.val_ap.items():
                writer.add_scalar(f"val/ap_{setting}", ap, step)
            writer.add_scalar("time/val_s", trainer.val_seconds, step)
        if self.preview is not None and step % self.preview_every == 0:
            for i, picture in enumerate(self.preview()):
                writer.add_image(f"detections/{i}", picture, step, dataformats="HWC")
        writer.flush()

    def after_train(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
