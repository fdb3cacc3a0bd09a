"""Runs every method named on the command line, one run each, into ``OUT/<method>``: started by
``tests/cli/test_cli_nproc.py`` under torchrun (2 ranks, one launch for all methods) and, for the
reference, in one process. ``python -m torch.distributed.run --standalone --nproc-per-node=2
tests/cli/nproc_methods.py OUT METHOD...``."""

from __future__ import annotations

import sys
from pathlib import Path

from selfexpand.runs import RunConfig, train_run

#: growth inside 4 epochs at epochs fixed by the settings (edge: a plateau every epoch; the others
#: grow on their own schedules)
SETTINGS = {"edge": {"min_gap": 1, "window": 1, "plateau_threshold": 100, "prune_after": 1, "max_new": 20}}
SETTINGS["edge-reference"] = SETTINGS["edge"]


def run_config(method: str, out) -> RunConfig:
    """float64 on digits, 4 epochs, global batch 32, seed 0."""
    return RunConfig(method=method, dataset="digits", epochs=4, batch_size=32, dtype="float64", seed=0,
                     out=str(out), settings=dict(SETTINGS.get(method, {})))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    for name in sys.argv[2:]:
        train_run(run_config(name, out / name))
