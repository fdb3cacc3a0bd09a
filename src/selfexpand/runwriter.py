"""The run directory's writer: the callback that appends ``history.jsonl`` and saves the checkpoint
(stamped with the run's identity), and the trainer of a run with it and the recorders."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .checkpoint import rng_state, save_checkpoint
from .runconfig import RunConfig
from .rundir import stamp
from .train.callbacks import Callback
from .train.history import to_json
from .train.recorders import InactivityRecorder, SizeControlRecorder
from .train.trainer import Trainer

__all__ = ["RunWriter", "run_trainer", "CHECKPOINT", "CHECKPOINT_SECONDS"]

CHECKPOINT = Path("checkpoint") / "last.safetensors"
CHECKPOINT_SECONDS = 10.0  # the longest a run waits between two checkpoints (after its first epoch's)


def _budget(config: RunConfig, settings: dict) -> int | None:
    """``--max-params`` if given, else the method row's ``max_params`` (None: no bound)."""
    return config.max_params if config.max_params is not None else settings.get("max_params")


class RunWriter(Callback):
    """Appends each epoch's records to ``history.jsonl`` and saves the checkpoint: at the start of a
    new run (epoch 0), after the first epoch a process trains, then at most every
    ``CHECKPOINT_SECONDS`` and at the end of training; never once training went wrong
    (``Trainer.failure``, or weights that are not finite): the last good checkpoint stays.

    Saving after every epoch made a run of many tiny epochs (the size methods' full-batch steps)
    spend nearly all its time writing: 2,000 epochs took 5 minutes, 8 s of them training. An
    interrupted run resumes from a checkpoint at most that old; the history is rewritten from the
    checkpoint's own copy when training (re)starts, so it never runs ahead of the checkpoint then.
    """

    def __init__(self, run_dir: Path, trainer: Trainer, counts_start: dict | None = None,
                 identity: dict | None = None, saved_epoch: int | None = None):
        self.run_dir, self.trainer, self.counts_start = run_dir, trainer, counts_start
        self.identity, self.saved_epoch = identity, saved_epoch
        self.written, self.last_save, self.epochs_saved = 0, 0.0, False

    def on_train_begin(self, ctx, **kwargs) -> None:
        if self.counts_start is None:
            self.counts_start = ctx.model.counts()
        ctx.history.write_jsonl(self.run_dir / "history.jsonl")
        self.written, self.last_save = len(ctx.history.records), time.perf_counter()
        if self.saved_epoch is None:  # a new run: a checkpoint before training (a full disk shows now)
            self._save(ctx)

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        self._append(ctx)
        if not self.epochs_saved or time.perf_counter() - self.last_save >= CHECKPOINT_SECONDS:
            self._save(ctx)
            self.epochs_saved = True

    def on_train_end(self, ctx, **kwargs) -> None:
        self._append(ctx)
        self._save(ctx)

    def _append(self, ctx) -> None:
        records = ctx.history.records[self.written:]
        if records:
            with open(self.run_dir / "history.jsonl", "a") as f:
                f.write("".join(to_json(r) + "\n" for r in records))
            self.written = len(ctx.history.records)

    def _save(self, ctx) -> None:
        if self.trainer.failure is not None:
            return
        if not all(bool(torch.isfinite(p).all()) for p in ctx.model.parameters()):
            self.trainer.failure = {"epoch": ctx.epoch, "reason": "non-finite weights"}
            ctx.request_stop("non-finite weights")
            return
        state, tensors = self.trainer.state_dict()
        save_checkpoint(self.run_dir / CHECKPOINT, ctx.model, ctx.optimizer,
                        extra={"trainer": state, "counts_start": self.counts_start},
                        tensors={**tensors, **rng_state()}, run=stamp(self.identity, full=True))
        self.last_save, self.saved_epoch = time.perf_counter(), ctx.epoch


def config_trainer(method, settings: dict, config: RunConfig) -> Trainer:
    """The trainer of a run's settings and configuration, with no callbacks (a data-parallel rank other
    than 0 trains with it as it is: it writes nothing)."""
    # a run stored before a training setting existed runs with its default (grow_until 1, no growth_lr)
    return Trainer.from_settings(method, settings, seed=config.seed, max_params=_budget(config, settings),
                                 device=config.device, dtype=config.dtype)


def run_trainer(method, settings: dict, config: RunConfig, callbacks, run_dir: Path,
             counts_start: dict | None = None, *, identity: dict | None = None,
             saved_epoch: int | None = None) -> Trainer:
    trainer = config_trainer(method, settings, config)
    # the recorders add to the epoch record, so they run before the writer stores it
    writer = RunWriter(run_dir, trainer, counts_start, identity, saved_epoch)
    trainer.callbacks = [InactivityRecorder(), SizeControlRecorder(), writer, *callbacks]
    return trainer
