"""Caffe's SGD solver (sgd_solver.cpp) and the `step` learning-rate policy of SSH/models/solver_ssh.prototxt.

Caffe keeps the learning rate inside the momentum history:
    v <- momentum * v + lr * lr_mult * (g + weight_decay * decay_mult * theta);  theta <- theta - v
torch.optim.SGD keeps it outside (v <- m * v + g'; theta <- theta - lr * v), which differs from
Caffe for a while after every learning-rate step. CaffeSGD reproduces Caffe exactly.
"""
from typing import NamedTuple

import torch
from torch.optim import Optimizer


class StepLR(NamedTuple):
    """Caffe `step` policy: lr(iteration) = base_lr * gamma ** floor(iteration / stepsize), iteration 0-based."""

    base_lr: float
    gamma: float
    stepsize: int

    def __call__(self, iteration):
        return self.base_lr * self.gamma ** (iteration // self.stepsize)


class CaffeSGD(Optimizer):
    """SGD with momentum and L2 weight decay as Caffe's SGDSolver::ComputeUpdateValue.

    Each parameter group holds "lr" and "weight_decay" already multiplied by the group's lr_mult /
    decay_mult (model.ssh.SSH.param_groups); `set_base_lr` rescales "lr" from a new base rate through
    the group's "lr_mult" (default 1). Gradients must already be averaged over the accumulated
    images (Caffe's iter_size normalisation happens before regularisation and the update).
    """

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def set_base_lr(self, base_lr):
        """Set every group's lr to base_lr * its "lr_mult"."""
        for group in self.param_groups:
            group["lr"] = base_lr * group.get("lr_mult", 1.0)

    @torch.no_grad()
    def step(self, closure=None):
        """One Caffe update of every parameter that has a gradient; returns closure() if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad.add(p, alpha=decay) if decay else p.grad
                state = self.state[p]
                if "history" not in state:
                    state["history"] = torch.zeros_like(p)
                history = state["history"]
                history.mul_(momentum).add_(d_p, alpha=lr)
                p.sub_(history)
        return loss
