"""``SearchOptions``: what one ``selfexpand search`` process is asked to do, checked.

Some options define the study (the dataset, the methods, the seed, ``--epochs``, ``--set``, the
validation fraction): every process that joins a study must give the same ones, and the study keeps
them (:meth:`SearchOptions.identity`). The rest are this process's own: how many trials it runs, for
how long, in how many worker processes, where its run directories go.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..data import dataset_options
from ..errors import ConfigError
from ..presets import method_names
from ..validators import integer, number, positive_int

__all__ = ["SearchOptions", "DEFAULT_METHODS", "SMALL_VALIDATION", "SMALL_REPEATS"]

#: the methods a search tries when none are named: the growing methods with a row for small data. Left
#: out: SWE's ablations svod-random / svod-zero, the reference presets, the size methods, static, and
#: senn / senn-deep, whose trials cost 5-20 times a baseline's (digits, 3 seeds: 42-190 s against 7-15 s;
#: in a 30-trial search they took 316 of 581 s), so that `--trials 30` on digits stays within minutes
DEFAULT_METHODS = ("edge", "random", "zero", "net2net", "gradmax", "firefly", "swe")

#: a validation split smaller than this is too noisy to choose settings by from one split: each trial
#: then trains SMALL_REPEATS runs (seeds, hence splits) and is judged by their mean. digits' 288
#: validation images: one image is 0.35 % accuracy, and the best default on one split's validation
#: accuracy was not the best on the test split (seed 0: senn 0.9792 / test 0.9694 against edge
#: 0.9653 / test 0.9806); over seeds 0-2, edge leads on both.
SMALL_VALIDATION = 1000
SMALL_REPEATS = 3


@dataclass
class SearchOptions:
    """One search process.

    Attributes:
        dataset: a dataset name or a .csv / .npz file (the training and validation splits are used).
        methods: the methods the search chooses among.
        trials: trials this process finishes (complete or pruned; failed ones do not count).
        out: the folder of the trial run directories, the report and (by default) the storage.
        storage: an Optuna RDB URL, an SQLite file (``.db``), or a journal file (``.log`` / ``.journal``);
            None: ``OUT/study.db``.
        study: the study's name (None: from the dataset, the methods and the seed).
        jobs: worker processes of this search (each runs its share of ``trials``).
        threads: torch threads per worker (None: torch's own, shared out among the workers).
        timeout: seconds after which this process starts no new trial (None: no limit).
        seed: the runs' seed (split, start values, growth) and the sampler's.
        repeats: runs per trial, with seeds ``seed``, ``seed + 1``, ...: the trial's value is their mean
            validation metric (None: :data:`SMALL_REPEATS` when the validation split has fewer than
            :data:`SMALL_VALIDATION` examples, whose metric is too noisy to choose by, else 1).
        epochs: epochs of every trial (None: each method's row).
        settings: settings fixed for every trial (``--set``; a dataset's options too).
        prune: let the pruner stop trials whose validation curve falls behind.
        data_dir, target, task, val_fraction: how the dataset is read, as ``train`` reads it.
        command: recorded in each run's ``environment.json`` and in ``search.md``.
    """

    dataset: str = "digits"
    methods: list = field(default_factory=lambda: list(DEFAULT_METHODS))
    trials: int = 20
    out: str | Path | None = None
    storage: str | None = None
    study: str | None = None
    jobs: int = 1
    threads: int | None = None
    timeout: float | None = None
    seed: int = 0
    repeats: int | None = None
    epochs: int | None = None
    settings: dict = field(default_factory=dict)
    prune: bool = True
    data_dir: str | None = None
    target: str | None = None
    task: str | None = None
    val_fraction: float = 0.2
    command: list | None = None

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Refuse what no search can run.

        Raises:
            ConfigError: no or unknown methods, a count that is not positive, an empty name.
        """
        if isinstance(self.methods, str):
            self.methods = [m.strip() for m in self.methods.split(",") if m.strip()]
        self.methods = list(dict.fromkeys(self.methods))
        if not self.methods:
            raise ConfigError("methods must name at least one method")
        unknown = [m for m in self.methods if m not in method_names()]
        if unknown:
            raise ConfigError(f"unknown method {unknown[0]!r}; known methods: {', '.join(method_names())}")
        self.trials = positive_int("trials", self.trials)
        self.jobs = positive_int("jobs", self.jobs)
        self.threads = None if self.threads is None else positive_int("threads", self.threads)
        self.timeout = None if self.timeout is None else number("timeout", self.timeout, 0, low_open=True)
        self.seed = integer("seed", self.seed)
        self.repeats = None if self.repeats is None else positive_int("repeats", self.repeats)
        self.epochs = None if self.epochs is None else positive_int("epochs", self.epochs)
        self.val_fraction = number("val_fraction", self.val_fraction, 0, 1, low_open=True, high_open=True)
        for name in ("study", "storage", "out"):
            value = getattr(self, name)
            if value is not None and not str(value).strip():
                raise ConfigError(f"{name} must not be empty")
        if not isinstance(self.settings, dict):
            raise ConfigError(f"settings must be a mapping of name: value, got {self.settings!r}")

    @property
    def study_name(self) -> str:
        """``--study``, else ``<dataset>-<methods>-seed<seed>`` (the methods hashed when they are many)."""
        if self.study is not None:
            return str(self.study)
        stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", Path(str(self.dataset)).stem.lower())
        methods = "+".join(self.methods)
        if len(methods) > 40:
            methods = f"{len(self.methods)}methods-{hashlib.sha1(methods.encode()).hexdigest()[:8]}"
        return f"{stem}-{methods}-seed{self.seed}"

    @property
    def out_dir(self) -> Path:
        """``--out``, else ``runs/search-<study>``."""
        return Path(self.out) if self.out is not None else Path("runs") / f"search-{self.study_name}"

    @property
    def data_settings(self) -> dict:
        """The ``settings`` the dataset declares as its options (``limit``)."""
        declared = dataset_options(self.dataset)
        return {k: v for k, v in self.settings.items() if k in declared}

    @property
    def method_settings(self) -> dict:
        """The ``settings`` that are method settings (not the dataset's options)."""
        declared = dataset_options(self.dataset)
        return {k: v for k, v in self.settings.items() if k not in declared}

    def identity(self) -> dict:
        """What defines the study (JSON): a process joining it must give the same."""
        return {"dataset": str(self.dataset), "methods": list(self.methods), "seed": self.seed,
                "repeats": self.repeats, "epochs": self.epochs,
                "settings": {k: self.settings[k] for k in sorted(self.settings)}, "target": self.target,
                "task": self.task, "val_fraction": self.val_fraction}
