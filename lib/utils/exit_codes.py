"""Exit codes of the command-line scripts (train.py, train_dist.py, test.py, eval.py, app.py, and the
model.deploy and benchmarks modules): one table for all.

A supervisor (torchrun, SLURM, systemd) or a shell script tells the outcomes apart by these numbers;
every non-zero exit also prints one `error:` line, except INTERRUPTED and PREEMPTED, which print what
was saved.
"""
from enum import IntEnum


class ExitCode(IntEnum):
    """Why a script ended."""

    OK = 0
    # test.py: some images or frames failed, the others were done (benchmarks: some benchmark failed).
    SOME_FAILED = 1
    # Bad input: a flag value, config, file, device or data folder that cannot work (argparse's own code).
    BAD_INPUT = 2
    # Training: a NaN or infinite loss; the last good snapshot is kept.
    NON_FINITE = 3
    # Another process of a torch.distributed job died, froze or never joined.
    PEER_FAILURE = 4
    # Training: SIGTERM or SIGUSR1 (a preemption); the step finished and was saved: restart with --resume auto.
    PREEMPTED = 5
    # Detection over files stopped by Ctrl-C or SIGTERM, the outputs so far whole (128 + SIGINT, as a shell).
    INTERRUPTED = 130
