"""One SGD step of SSH training (official SSH/train.py + Caffe's Solver::Step with iter_size).

One iteration = one SGD step over `iter_size` images, one image per forward/backward pass. Each
image's summed six losses are divided by iter_size before backward, so the accumulated gradient
is the mean over the images (Caffe's iter_size normalisation).
"""
import math
from contextlib import nullcontext

import torch

from lib.losses import ssh_losses


class NonFiniteLoss(RuntimeError):
    """A NaN or infinite loss; raised before the optimizer step, so the weights stay the last good ones."""


def amp_dtype(device):
    """Autocast dtype for --amp: bfloat16 where supported (CPU, recent GPUs), else float16."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def image_losses(net, item, settings, device, autocast_dtype=None):
    """The six named losses of one TrainDataset item (forward pass under autocast when a dtype is given).

    settings: the LossSettings of ssh_losses.
    """
    device = torch.device(device)
    data = item["data"].to(device, non_blocking=True)[None]
    gt_boxes = item["gt_boxes"].to(device, non_blocking=True)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else nullcontext())
    with autocast:
        heads = net(data)
    return ssh_losses(heads, gt_boxes, tuple(data.shape[-2:]), settings)


def train_step(optimizer, items, loss_fn, scaler=None, average=None):
    """One SGD iteration over the images in `items`; returns the mean losses {name: float}.

    loss_fn(item) -> {name: scalar loss}. Gradients are accumulated over len(items) backward passes
    of loss / len(items). `average(tensors)` (optional) averages a list of tensors in place across
    processes; it is applied to the losses and to every gradient before the step. A non-finite
    mean loss raises NonFiniteLoss before any parameter changes. `scaler` is a GradScaler (AMP).
    """
    optimizer.zero_grad(set_to_none=True)
    totals = {}
    for item in items:
        losses = loss_fn(item)
        loss = sum(losses.values()) / len(items)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        for name, value in losses.items():
            totals[name] = totals.get(name, 0.0) + value.detach().float() / len(items)
    stacked = torch.stack(list(totals.values()))
    if average is not None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        average([stacked, *grads])
    means = dict(zip(totals, stacked.tolist()))
    if not all(math.isfinite(v) for v in means.values()):
        raise NonFiniteLoss(", ".join(f"{name} = {v:g}" for name, v in means.items()))
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return means


def gradient_norm(optimizer):
    """L2 norm (float) of all the gradients the optimizer's last step used (after any averaging and
    unscaling); 0.0 when there are none."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return 0.0
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])).item()
