"""Multi-process training on torch.distributed (official main_train.py: one solver per GPU, NCCL all-reduce).

One process per device. The ranks meet on a c10d store, either at tcp://MASTER_IP:PORT given by
flags (rank 0 hosts the store) or through env:// as set by torchrun. Every rank first announces
itself on the store, so a rank that never starts is named after `timeout`. Failed collectives
raise PeerFailure; `lost_ranks` then asks the store which ranks still answer. Bad input (a device,
a master address or port that cannot work here) raises ValueError before anything waits on a peer.
"""
import datetime
import errno
import os
import re
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lib.utils.device import parse_device

JOINED = "ssh/joined"
ALIVE = "ssh/alive"
SOURCE_PREFIX = re.compile(r"^\[[^\]\s]+:\d+\] ")


class PeerFailure(RuntimeError):
    """A collective or the rendezvous failed: a peer died, hung, or never joined."""


@dataclass(frozen=True)
class Launch:
    """Where this process stands: rank, world size, rank on its machine, the master (None: env://), and
    how many times torchrun has restarted the group before (TORCHELASTIC_RESTART_COUNT)."""

    rank: int
    world_size: int
    local_rank: int | None
    master: tuple[str, int] | None
    restart: int = 0


def launch_from(rank, world_size, master_ip, master_port, environ=os.environ):
    """The Launch of explicit flags (rank and world_size given) or else of torchrun's environment."""
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ValueError("--rank and --world-size go together")
        if world_size < 1:
            raise ValueError(f"--world-size {world_size} must be at least 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"--rank {rank} is not in [0, --world-size {world_size})")
        return Launch(rank, world_size, None, (master_ip, master_port))
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in environ]
    if missing:
        raise ValueError(f"give --rank and --world-size, or run under torchrun ({', '.join(missing)} not set)")
    local_rank = _env_int(environ, "LOCAL_RANK") if "LOCAL_RANK" in environ else None
    restart = _env_int(environ, "TORCHELASTIC_RESTART_COUNT") if "TORCHELASTIC_RESTART_COUNT" in environ else 0
    return Launch(_env_int(environ, "RANK"), _env_int(environ, "WORLD_SIZE"), local_rank, None, restart)


def _env_int(environ, name):
    """The whole number in environment variable `name`; ValueError naming it otherwise."""
    try:
        return int(environ[name])
    except ValueError:
        raise ValueError(f"environment variable {name}={environ[name]!r} is not a whole number") from None


def pick_device(device, gpu, launch):
    """This rank's torch.device, made current on CUDA; ValueError (one sentence) when it cannot be used.

    `device`: the --device text (None: cuda when available, else cpu); `gpu`: --gpu, which implies
    CUDA. A plain cuda takes LOCAL_RANK (torchrun), else the rank modulo the GPU count.
    """
    chosen = _gpu_device(device, gpu) if gpu is not None else _rank_device(parse_device(device), launch)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    return chosen


def _gpu_device(device, gpu):
    """cuda:`gpu` for --gpu, checked against --device (None, cuda or cuda:`gpu`) and this machine's GPUs."""
    if device is not None:
        named = parse_device(device)
        if named.type != "cuda":
            raise ValueError(f"--gpu {gpu} needs a CUDA device, but --device is {device}")
        if named.index not in (None, gpu):
            raise ValueError(f"--device {device} and --gpu {gpu} name different GPUs")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(f"--gpu {gpu}: no CUDA GPU is available here (torch {torch.__version__}); "
                         "leave out --gpu to train on the CPU")
    if not 0 <= gpu < count:
        raise ValueError(f"--gpu {gpu}: this machine has {count} CUDA GPU(s), 0 .. {count - 1}")
    return torch.device("cuda", gpu)


def _rank_device(device, launch):
    """`device`, or for a cuda without index the GPU of LOCAL_RANK, else of the rank modulo the GPU count."""
    if device.type != "cuda" or device.index is not None:
        return device
    count = torch.cuda.device_count()
    if launch.local_rank is None:
        return torch.device("cuda", launch.rank % count)
    if launch.local_rank >= count:
        raise ValueError(f"LOCAL_RANK {launch.local_rank} has no GPU: this machine has {count} CUDA GPU(s), "
                         f"so start at most {count} processes on it")
    return torch.device("cuda", launch.local_rank)


def split_iter_size(images_per_step, world_size):
    """Images each rank accumulates per SGD step: images_per_step / world_size, rounded, at least 1."""
    return max(1, int(images_per_step / world_size + 0.5))


def backend_for(device):
    """nccl for CUDA devices, gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def _master_address(host, port):
    """(family, socket address) of --master-ip `host` and --master-port `port`; ValueError if it does not resolve."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ValueError(f"--master-ip {host} does not resolve to an address "
                         f"({getattr(e, 'strerror', None) or e})") from None
    return family, address


def _check_master_here(host, port):
    """ValueError unless rank 0 can listen at `host`:`port`: an address of this machine and a free port.

    A test bind, because a TCPStore that cannot listen fails only after its own client times out.
    """
    family, address = _master_address(host, port)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ValueError(f"--master-port {port} is in use by another program on this machine; "
                                 "choose a free port") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise ValueError(f"--master-ip {host} is not an address of this machine, "
                                 "where rank 0 hosts the rendezvous") from None
            raise ValueError(f"rank 0 cannot listen on {host}:{port}: {e.strerror}") from None


def _master_answers(host, port, timeout):
    """True once something accepts TCP connections at `host`:`port`, False after `timeout` seconds.

    Asked before TCPStore connects, whose C++ client logs every failed attempt with a stack trace.
    """
    family, address = _master_address(host, port)
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                s.connect(address)
                return True
            except OSError:
                pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _store(launch, timeout):
    """The c10d store of `launch`: torchrun's (env://), else the TCPStore that rank 0 hosts at the master.

    torchrun's store outlives a restart of the worker group, so each restart keeps its keys under its
    own prefix: else the new group reads those of the dead one (gloo's addresses of the dead processes,
    the ranks that answered) and fails to connect.
    """
    delta = datetime.timedelta(seconds=timeout)
    if launch.master is None:
        store, _, _ = next(dist.rendezvous("env://", timeout=delta))
        return dist.PrefixStore(f"ssh/restart_{launch.restart}", store)
    host, port = launch.master
    if launch.rank == 0:
        _check_master_here(host, port)
    elif not _master_answers(host, port, timeout):
        raise PeerFailure(f"rank {launch.rank}: no master (rank 0) at {host}:{port} within {timeout:g} s "
                          "(nothing accepts connections there)")
    return dist.TCPStore(host, port, launch.world_size, launch.rank == 0, delta, wait_for_workers=False)


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


def join_store(launch, timeout):
    """The c10d store of `launch`, once every rank has announced itself on it (within `timeout` seconds:
    else PeerFailure naming the missing ranks or the unreachable master)."""
    delta = datetime.timedelta(seconds=timeout)
    where = f"{launch.master[0]}:{launch.master[1]}" if launch.master else "env://"
    try:
        store = _store(launch, timeout)
    except dist.DistError as e:
        raise PeerFailure(f"rank {launch.rank}: no master (rank 0) at {where} within {timeout:g} s: "
                          f"{_first_line(e)}") from None
    try:
        missing = _answered(store, JOINED, launch.rank, launch.world_size, delta)
    except dist.DistError as e:
        raise PeerFailure(f"rank {launch.rank}: lost the master (rank 0) at {where} while the ranks joined: "
                          f"{_first_line(e)}") from None
    if missing:
        raise PeerFailure(f"rank {launch.rank}: {_ranks(missing)} of {launch.world_size} did not join at {where} "
                          f"within {timeout:g} s")
    return store


def init_distributed(launch, device, timeout):
    """Join the process group of `launch` on `device` (nccl on CUDA, gloo on CPU); returns the c10d store.

    `timeout` (seconds) bounds the rendezvous, every later collective and the wait for peers that
    never start; PeerFailure names the missing ranks or the unreachable master. ValueError when the
    master's address cannot work: a name that does not resolve, or on rank 0 an address of another
    machine or a port in use.
    """
    store = join_store(launch, timeout)
    delta = datetime.timedelta(seconds=timeout)
    backend = backend_for(device)
    try:
        dist.init_process_group(backend, store=store, rank=launch.rank, world_size=launch.world_size,
                                timeout=delta, device_id=device if device.type == "cuda" else None)
    except RuntimeError as e:
        raise PeerFailure(f"rank {launch.rank}: the {backend} process group did not start: {_first_line(e)}") from None
    return store


def lost_ranks(store, rank, world_size, wait):
    """After a failed collective: the ranks that do not answer on the store within `wait` seconds.

    None when the store itself is gone or frozen (it lives in rank 0, or in torchrun's agent). The
    questions run in a daemon thread given twice `wait`: TCPStore.wait never returns when the
    store's process is stopped (SIGSTOP) rather than dead.
    """
    answers = []

    def ask():
        try:
            answers.append(_answered(store, ALIVE, rank, world_size, datetime.timedelta(seconds=wait)))
        except dist.DistError:
            answers.append(None)

    thread = threading.Thread(target=ask, name="lost_ranks", daemon=True)
    thread.start()
    thread.join(2 * wait)
    return answers[0] if answers else None


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
    """The first line of `error`'s message without the "[/path/file.cc:123] " that gloo puts in front."""
    text = str(error).strip()
    return SOURCE_PREFIX.sub("", text.splitlines()[0]) if text else type(error).__name__


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


def max_over_ranks(values, device, what):
    """[max over all ranks of values[i]] of a list of whole numbers, the same on every rank.

    For stop requests (the strongest wins) and agreement checks ([v, -v] gives the max and minus the
    min). `what` names the purpose in the PeerFailure of a lost peer.
    """
    t = torch.tensor(values, dtype=torch.int64, device=device)
    with _peer_errors(what):
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


@torch.no_grad()
def broadcast_module(module, src=0):
    """Copy the parameters and buffers of rank `src` into `module` on every rank."""
    with _peer_errors("sharing the initial weights"):
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t, src)


def results_group(hours=6):
    """A gloo process group of all ranks for exchanging results (e.g. validation detections) whose waits may
    last as long as the slowest rank's share of work: its collectives time out after `hours`, not the
    training's --timeout. A peer that dies usually fails them at once (its connection closes). Every rank
    must call this, in the same order as its other collectives."""
    return dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=hours))


def gather_on_rank0(obj, group, what):
    """[every rank's picklable `obj`, in rank order] on rank 0 and None on the others, over `group`;
    PeerFailure naming `what` when a peer is lost."""
    rank = dist.get_rank()
    out = [None] * dist.get_world_size() if rank == 0 else None
    with _peer_errors(what):
        dist.gather_object(obj, out, dst=0, group=group)
    return out


def broadcast_from_rank0(obj, group, what):
    """Rank 0's picklable `obj` on every rank, over `group`; PeerFailure naming `what` when a peer is lost."""
    box = [obj]
    with _peer_errors(what):
        dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def wait_for_ranks(group, what):
    """Block until every rank of `group` reaches this call; PeerFailure naming `what` when a peer is lost."""
    with _peer_errors(what):
        dist.barrier(group=group)
