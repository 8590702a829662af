"""Multi-process training on torch.distributed (official main_train.py: one solver per GPU, NCCL all-reduce).

One process per device. The ranks meet on a c10d store, either at tcp://MASTER_IP:PORT given by
flags (rank 0 hosts the store) or through env:// as set by torchrun. Every rank first announces
itself on the store, so a rank that never starts is named after `timeout`. Failed collectives
raise PeerFailure; `lost_ranks` then asks the store which ranks still answer.
"""
import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

JOINED = "ssh/joined"
ALIVE = "ssh/alive"


class PeerFailure(RuntimeError):
    """A collective or the rendezvous failed: a peer died, hung, or never joined."""


@dataclass(frozen=True)
class Launch:
    """Where this process stands: rank, world size, rank on its machine, and the master (None: env://)."""

    rank: int
    world_size: int
    local_rank: int | None
    master: tuple[str, int] | None


def launch_from(rank, world_size, master_ip, master_port, environ=os.environ):
    """The Launch of explicit flags (rank and world_size given) or else of torchrun's environment."""
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ValueError("--rank and --world_size go together")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"--rank {rank} is not in [0, --world_size {world_size})")
        return Launch(rank, world_size, None, (master_ip, master_port))
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in environ]
    if missing:
        raise ValueError(f"give --rank and --world_size, or run under torchrun ({', '.join(missing)} not set)")
    local_rank = int(environ["LOCAL_RANK"]) if "LOCAL_RANK" in environ else None
    return Launch(int(environ["RANK"]), int(environ["WORLD_SIZE"]), local_rank, None)


def pick_device(device_type, gpu, launch):
    """This rank's device, made current on CUDA: --gpu, else LOCAL_RANK, else rank modulo the GPU count."""
    if device_type == "cpu":
        if gpu is not None:
            raise ValueError("--gpu needs --device cuda")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("--device cuda, but no CUDA device is available")
    if gpu is None:
        gpu = launch.local_rank if launch.local_rank is not None else launch.rank % torch.cuda.device_count()
    device = torch.device("cuda", gpu)
    torch.cuda.set_device(device)
    return device


def split_iter_size(images_per_step, world_size):
    """Images each rank accumulates per SGD step: images_per_step / world_size, rounded, at least 1."""
    return max(1, int(images_per_step / world_size + 0.5))


def backend_for(device):
    """nccl for CUDA devices, gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def _store(launch, timeout):
    if launch.master is None:
        store, _, _ = next(dist.rendezvous("env://", timeout=timeout))
        return store
    host, port = launch.master
    return dist.TCPStore(host, port, launch.world_size, launch.rank == 0, timeout, wait_for_workers=False)


def _answered(store, prefix, rank, world_size, timeout):
    """Announce `rank` under `prefix`, wait up to `timeout` for the others; the ranks that did not answer."""
    store.set(f"{prefix}/{rank}", "1")
    try:
        store.wait([f"{prefix}/{r}" for r in range(world_size)], timeout)
        return []
    except dist.DistStoreError:
        return [r for r in range(world_size) if not store.check([f"{prefix}/{r}"])]


def _ranks(ranks):
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def init_distributed(launch, device, timeout):
    """Join the process group of `launch` on `device` (nccl on CUDA, gloo on CPU); returns the c10d store.

    `timeout` (seconds) bounds the rendezvous, every later collective and the wait for peers that
    never start; PeerFailure names the missing ranks or the unreachable master.
    """
    delta = datetime.timedelta(seconds=timeout)
    where = f"{launch.master[0]}:{launch.master[1]}" if launch.master else "env://"
    try:
        store = _store(launch, delta)
    except dist.DistError as e:
        raise PeerFailure(f"rank {launch.rank}: no master (rank 0) at {where} within {timeout:g} s: "
                          f"{_first_line(e)}") from None
    missing = _answered(store, JOINED, launch.rank, launch.world_size, delta)
    if missing:
        raise PeerFailure(f"rank {launch.rank}: {_ranks(missing)} of {launch.world_size} did not join at {where} "
                          f"within {timeout:g} s")
    dist.init_process_group(backend_for(device), store=store, rank=launch.rank, world_size=launch.world_size,
                            timeout=delta, device_id=device if device.type == "cuda" else None)
    return store


def lost_ranks(store, rank, world_size, wait):
    """After a failed collective: the ranks that do not answer on the store within `wait` seconds.

    None when the store itself is gone (it lives in rank 0, or in torchrun's agent).
    """
    try:
        return _answered(store, ALIVE, rank, world_size, datetime.timedelta(seconds=wait))
    except dist.DistError:
        return None


def failure_message(rank, lost, error):
    """One line naming this rank, the lost peers (`lost_ranks`; None: the store is gone) and the failure."""
    if lost is None:
        peers = "rank 0 (the master: its rendezvous store is gone)"
    elif lost:
        peers = _ranks(lost)
    else:
        peers = "a peer"
    return f"rank {rank}: lost {peers} {error}"


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


@contextmanager
def _peer_errors(what):
    """Turn the RuntimeError of a failed collective into PeerFailure naming `what` was going on."""
    try:
        yield
    except RuntimeError as e:
        raise PeerFailure(f"while {what}: {_first_line(e)}") from e


def all_reduce_mean(tensors):
    """Average `tensors` in place over all ranks: one all_reduce (sum, then / world size) per device and dtype.

    The `average` hook of lib.training.train_step (gradients and losses).
    """
    buckets = {}
    for t in tensors:
        buckets.setdefault((t.device, t.dtype), []).append(t)
    world_size = dist.get_world_size()
    for bucket in buckets.values():
        flat = torch.cat([t.reshape(-1) for t in bucket])
        with _peer_errors("averaging gradients"):
            dist.all_reduce(flat)
        flat.div_(world_size)
        for t, part in zip(bucket, flat.split([t.numel() for t in bucket])):
            t.copy_(part.view_as(t))


def any_rank(flag, device):
    """True on every rank when `flag` is true on at least one."""
    t = torch.tensor([float(flag)], device=device)
    with _peer_errors("agreeing whether to stop"):
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


@torch.no_grad()
def broadcast_module(module, src=0):
    """Copy the parameters and buffers of rank `src` into `module` on every rank."""
    with _peer_errors("sharing the initial weights"):
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t, src)
