"""Detection over several processes and machines (torchrun): each rank detects a balanced share of the
items, the ranks watch each other, and rank 0 gathers what must be one file.

The ranks meet on torchrun's c10d store (lib.utils.distributed.join_store) and need no process group:
detection exchanges no tensors. Each rank counts its finished items on the store (rank 0 shows one
progress bar for the job), beats a heart there every second from a background thread, and posts its
results at the end. A rank whose heart stops for `timeout` seconds (killed, frozen, its machine gone)
makes the others stop with one line naming it; the same command again resumes (test.py --resume,
eval.py's cache). One process (no torchrun) is rank 0 of 1 with no store.
"""
import heapq
import json
import os
import threading
import time

from .utils.distributed import PeerFailure, join_store, launch_from

BEAT_SECONDS = 1.0


def balanced_shares(costs, world_size):
    """For each rank, the indices of its items (ascending): longest-processing-time-first greedy over
    `costs` (e.g. blob pixels), so ranks finish together on items of mixed sizes. Deterministic."""
    loads = [(0.0, rank) for rank in range(world_size)]
    shares = [[] for _ in range(world_size)]
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, rank = heapq.heappop(loads)
        shares[rank].append(index)
        heapq.heappush(loads, (load + costs[index], rank))
    return [sorted(share) for share in shares]


class DetectionJob:
    """This process's place in a detection run: `rank` of `world_size` (0 of 1 without torchrun)."""

    def __init__(self, launch=None, timeout=30.0):
        self.rank, self.world_size = (launch.rank, launch.world_size) if launch else (0, 1)
        self.local_rank = launch.local_rank if launch else None
        self.timeout = timeout
        self.store = join_store(launch, timeout) if launch else None
        self.lost = []
        if self.store is not None:
            self._stop = threading.Event()
            threading.Thread(target=self._watch, name="detection-job", daemon=True).start()

    @classmethod
    def from_environment(cls, timeout=30.0, environ=os.environ):
        """The job torchrun started this process in (WORLD_SIZE > 1), else a job of one process."""
        if int(environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        return cls(launch_from(None, None, None, None, environ), timeout)

    @property
    def distributed(self):
        return self.world_size > 1

    def share(self, items, costs):
        """This rank's items of `items` (a list), in their order, by `balanced_shares` of `costs`."""
        return [items[i] for i in balanced_shares(costs, self.world_size)[self.rank]]

    # --- progress and peers ---------------------------------------------------------------------------

    def advance(self, count=1):
        """Count `count` more finished items of this rank; the job's total so far."""
        return self.store.add("detect/done", count) if self.store is not None else None

    def _watch(self):
        """Beat this rank's heart, and note peers whose heart stopped for `timeout` seconds."""
        seen = {r: (-1, time.monotonic()) for r in range(self.world_size) if r != self.rank}
        while not self._stop.wait(BEAT_SECONDS):
            try:
                self.store.add(f"detect/beat/{self.rank}", 1)
                now = time.monotonic()
                for r, (beats, since) in seen.items():
                    if self.store.check([f"detect/finished/{r}"]):
                        continue
                    current = self.store.add(f"detect/beat/{r}", 0)
                    seen[r] = (current, now) if current != beats else (beats, since)
                    if current == beats and now - since > self.timeout and r not in self.lost:
                        self.lost.append(r)
            except Exception:  # the store is gone: it lives with rank 0 or torchrun's agent
                if "store" not in self.lost:
                    self.lost.append("store")
                return

    def check_peers(self):
        """Raise PeerFailure naming the ranks whose heart stopped (or the lost store)."""
        if self.lost:
            ranks = [r for r in self.lost if r != "store"]
            who = (("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks)) if ranks else
                   "the rendezvous store (rank 0 or torchrun's agent)")
            raise PeerFailure(f"rank {self.rank}: lost {who}: no sign of life for {self.timeout:g} s; run the same "
                              "command again to resume")

    # --- the end ----------------------------------------------------------------------------------------

    def gather(self, result):
        """Every rank's JSON-serialisable `result`, in rank order, on rank 0 (None on the others), once all
        ranks posted theirs; PeerFailure when one stops first."""
        if self.store is None:
            return [result]
        self.store.set(f"detect/result/{self.rank}", json.dumps(result))
        self.store.set(f"detect/finished/{self.rank}", "1")
        if self.rank != 0:
            return None
        keys = [f"detect/finished/{r}" for r in range(self.world_size)]
        while not self.store.check(keys):
            self.check_peers()
            time.sleep(0.1)
        return [json.loads(self.store.get(f"detect/result/{r}")) for r in range(self.world_size)]

    def wait_for(self, key):
        """Block until rank 0 sets `key` (e.g. the end of a step every rank must wait for)."""
        if self.store is None:
            return
        while not self.store.check([key]):
            self.check_peers()
            time.sleep(0.1)

    def announce(self, key):
        """Set `key` on the store (rank 0 telling the others a step is done)."""
        if self.store is not None:
            self.store.set(key, "1")

    def close(self):
        if self.store is not None:
            self._stop.set()
