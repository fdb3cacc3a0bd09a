"""PyTorch Lightning: :class:`GrowthCallback` grows the :class:`~selfexpand.graph.GrowableNet` of a
``LightningModule`` while a ``lightning.Trainer`` trains it.

At each training epoch's end (``on_train_epoch_end``, after Lightning's validation) the callback records
the epoch (the mean of the training steps' losses, and the validation loss and metric that the
method's parts read, computed on the callback's own tensors), then runs the method's growth step: the
parts' ``on_validation_end``, the trigger, the selector, the initializer (as ``selfexpand.train.Trainer``
does). The growth ops get the trainer's optimizer, so its state is carried through every growth.
Lightning calls the monitoring callbacks (``ModelCheckpoint``, ``EarlyStopping``) after the others at
that hook, so a checkpoint saved at an epoch's end holds the grown network.

Training, stopping, logging and validation stay Lightning's: the callback logs ``growth/params`` and
``growth/units_added`` with ``pl_module.log`` and each growth event at INFO (logger
``selfexpand.lightning``); a part that asks the run to stop sets ``trainer.should_stop``.

**Checkpoints.** A full Lightning checkpoint gets the network's architecture in
``checkpoint["selfexpand"]`` (``selfexpand.lightning_ckpt``) and the callback's state (epoch records and
growth events, the method's state and tensors, its generator, the optimizer's parameter order) under
the callback's ``state_key``. ``trainer.fit(module, ckpt_path=...)`` resumes a grown network: Lightning
calls the module's ``on_load_checkpoint`` just before it loads the module's state dict and after every
``setup`` hook (``trainer.ckpt_path`` is not known yet in ``setup``), so during ``fit`` the callback
places a step before the module's own ``on_load_checkpoint`` that rebuilds the network to the saved
architecture; in ``on_fit_start``, after ``configure_optimizers`` and before the optimizer's state is
restored, it puts the fresh optimizer's parameters back in the saved order.
"""

from __future__ import annotations

import logging
import math
import time

import torch

try:
    import lightning.pytorch as pl
    from lightning.pytorch.core.optimizer import LightningOptimizer
    from lightning.pytorch.strategies import SingleDeviceStrategy
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(f"selfexpand.lightning needs PyTorch Lightning (pip install lightning): {exc}") from exc

from .errors import CheckpointError, ConfigError
from .lightning_ckpt import (FORMAT, find_net, optimizer_param_names, reorder_optimizer, restore_architecture,
                             save_architecture)
from .lightning_data import growth_dataset
from .presets import build_method, get_preset, resolve_config
from .presets.starts import start_class
from .train import growth_step
from .train.context import GrowthContext
from .train.metrics import task_loss, task_metric

__all__ = ["GrowthCallback", "check_single_device"]

log = logging.getLogger("selfexpand.lightning")

#: training settings that Lightning owns (``configure_optimizers``, ``max_epochs``): refused here
_LIGHTNING_OWNS = ("lr", "optimizer", "weight_decay", "lr_schedule")
_GROWTH_LR = {"growth_warmup": 0.0, "new_lr_scale": 1.0}  # growth-aware rates: not supported here (their "off")


def check_single_device(trainer) -> None:
    """Refuse a trainer on more than one device or process, or with a strategy other than a single
    device's (DDP would need re-wrapping after each growth: the distributed issue).

    Raises:
        ConfigError: naming the device count and strategy found.
    """
    devices, world = getattr(trainer, "num_devices", 1), getattr(trainer, "world_size", 1)
    strategy = getattr(trainer, "strategy", None)
    if devices != 1 or world != 1 or not isinstance(strategy, SingleDeviceStrategy):
        raise ConfigError(f"GrowthCallback grows on one device only (a single-device strategy) until distributed "
                          f"growth lands, got devices={devices}, world_size={world}, strategy="
                          f"{type(strategy).__name__}; use Trainer(devices=1)")


class GrowthCallback(pl.Callback):
    """Grows a ``LightningModule``'s :class:`GrowableNet` at epoch ends by a selfexpand method.

    Args:
        method: the growth method (``selfexpand methods`` lists them); one whose start network is an
            MLP or conv net (the module brings its own network).
        dataset: the method row whose settings apply (``"digits"``; default ``"*"``, the generic row).
        data: the tensors the parts read (statistics, validation, SWE's integration epochs): a
            ``selfexpand.data.Dataset`` or ``(x_train, y_train, x_val, y_val)``. Default: gathered
            once per ``fit`` from the trainer's training and (first) validation dataloaders, every batch
            an ``(x, y)`` pair, in dataset order (``selfexpand.lightning_data``).
        net_attr: the module's network attribute (dotted); default ``net``, else its first GrowableNet.
        seed: seeds the callback's generator (the parts' random draws and batch order).
        **settings: the method's settings by name (``units=8``, ``max_params=5000``). ``batch_size`` is
            the parts' (gradient passes, SWE's integration epochs; default: the training dataloader's).
            ``epochs`` is the
            run's planned length for the parts' epoch counts (default: the trainer's ``max_epochs``;
            give it when a run is resumed with a longer ``max_epochs``, so that both halves agree).

    Raises:
        ConfigError: an unknown method or setting, a value its rule refuses, a setting that Lightning
            owns (``lr``, ``optimizer``, ``weight_decay``, ``lr_schedule``: ``configure_optimizers``
            decides), growth-aware learning rates, a start-network setting, or a method that grows its
            own start network (size-weight, controller-mask, senn).
    """

    def __init__(self, method: str, *, dataset: str = "*", data=None, net_attr: str | None = None, seed: int = 0,
                 **settings):
        owned = sorted(set(settings) & set(_LIGHTNING_OWNS))
        if owned:
            raise ConfigError(f"{owned} are Lightning's to set (configure_optimizers, the Trainer), not "
                              f"GrowthCallback's; got {({k: settings[k] for k in owned})}")
        start = get_preset(method).start
        if start != "mlp":
            raise ConfigError(f"method {method!r} grows its own start network ({start!r}), which a LightningModule "
                              f"does not build; GrowthCallback takes methods with an mlp start (e.g. random, zero, "
                              f"net2net, gradmax, firefly, edge, swe, svod-random)")
        starting = sorted(set(settings) & {s.name for s in start_class(start).declared()})
        if starting:
            raise ConfigError(f"{starting} are settings of the start network; GrowthCallback grows the module's own "
                              f"network, got {({k: settings[k] for k in starting})}")
        self.config = resolve_config(method, dataset, overrides=settings)
        on = {k: self.config[k] for k, off in _GROWTH_LR.items() if self.config[k] != off}
        if on:
            raise ConfigError(f"growth-aware learning rates are not supported by GrowthCallback, got {on}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an int, got seed={seed!r}")
        self.method_name, self.seed, self.net_attr, self.data = method, seed, net_attr, data
        self.epochs = self.config["epochs"] if "epochs" in settings else None
        self._batch_size = self.config["batch_size"] if "batch_size" in settings else None
        self.method = build_method(method, self.config)
        self.ctx: GrowthContext | None = None
        self._loaded: dict | None = None
        self._net_path: str | None = None
        self._module = None  # the LightningModule of the latest setup
        self._loss = [0.0, 0]  # this epoch's training loss sum and count
        self._epoch_start = time.perf_counter()

    # ------------------------------------------------------------------ set up and resume
    def setup(self, trainer, pl_module, stage: str) -> None:
        check_single_device(trainer)
        self._net_path = find_net(pl_module, self.net_attr)
        _remove_preload(pl_module)  # one left by a fit that failed
        original = pl_module.on_load_checkpoint

        def on_load_checkpoint(checkpoint):  # Lightning calls it just before the module's state dict loads
            restore_architecture(pl_module, checkpoint)
            return original(checkpoint)

        on_load_checkpoint.selfexpand_preload = True
        pl_module.on_load_checkpoint = on_load_checkpoint
        self._module = pl_module
        if stage == "fit":
            self.method = build_method(self.method_name, self.config)  # every fit starts from fresh parts
            self.ctx, self._loaded = None, None

    def teardown(self, trainer, pl_module, stage: str) -> None:
        _remove_preload(pl_module)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        _remove_preload(pl_module)  # Lightning skips teardown when fit raises

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict:  # saved before training began: nothing to continue
            return
        if state_dict.get("format") != FORMAT or state_dict.get("method") != self.method_name:
            raise CheckpointError(f"the checkpoint's GrowthCallback state is of method {state_dict.get('method')!r} "
                                  f"(format {state_dict.get('format')!r}); this callback runs {self.method_name!r} "
                                  f"(format {FORMAT!r})")
        self._loaded = state_dict

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        save_architecture(pl_module, checkpoint, self._net_path)

    def state_dict(self) -> dict:
        ctx = self.ctx
        if ctx is None:
            return dict(self._loaded or {})
        return {"format": FORMAT, "method": self.method_name, "epoch": ctx.epoch,
                "history": ctx.history.state_dict(), "method_state": self.method.state_dict(),
                "method_tensors": self.method.state_tensors(), "generator": ctx.generator.get_state(),
                "loss": [float(self._loss[0]), self._loss[1]],
                "optimizer_params": optimizer_param_names(ctx.optimizer, self._module)}

    def on_fit_start(self, trainer, pl_module) -> None:
        optimizer = _the_optimizer(trainer)
        if self._loaded is not None and "optimizer_params" in self._loaded:
            reorder_optimizer(optimizer, pl_module, self._loaded["optimizer_params"])

    def on_train_start(self, trainer, pl_module) -> None:
        net = pl_module.get_submodule(self._net_path)
        optimizer = _the_optimizer(trainer)
        tracked = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if any(id(p) not in tracked for p in net.parameters()):
            raise ConfigError(f"the trainer's optimizer must train every parameter of {type(pl_module).__name__}."
                              f"{self._net_path} (configure_optimizers: e.g. Adam(self.parameters()))")
        if trainer.accumulate_grad_batches != 1 and any(p.overrides("on_batch_end") for p in self.method.parts()):
            raise ConfigError(f"method {self.method_name!r} reads gradients after every optimizer step; "
                              f"accumulate_grad_batches must be 1, got {trainer.accumulate_grad_batches}")
        data = growth_dataset(self.data, trainer, net, pl_module.device)
        config = self.config
        batch_size = self._batch_size or getattr(trainer.train_dataloader, "batch_size", None) or config["batch_size"]
        epochs = self.epochs if self.epochs is not None else max(int(trainer.max_epochs or 0), 0)
        self.ctx = ctx = GrowthContext(
            model=net, optimizer=optimizer, loss_fn=task_loss(data.task), data=data,
            batch_size=int(batch_size), generator=torch.Generator().manual_seed(self.seed),
            device=pl_module.device, max_params=config["max_params"], metric_name=task_metric(data.task),
            epochs_total=epochs, grow_until=config["grow_until"])
        if self._loaded:
            state = self._loaded
            ctx.epoch = int(state["epoch"])
            ctx.history.load_state_dict(state["history"])
            self.method.load_state_dict(state["method_state"])
            self.method.load_state_tensors(state["method_tensors"])
            ctx.generator.set_state(state["generator"])
            self._loss = [float(state["loss"][0]), int(state["loss"][1])]
        self._epoch_start = time.perf_counter()  # a resumed epoch whose end is still to come: timed from here
        for part in self.method.parts():
            part.on_train_begin(ctx)

    # ------------------------------------------------------------------ an epoch
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._loss, self._epoch_start = [0.0, 0], time.perf_counter()
        for part in self.method.parts():
            part.on_epoch_begin(self.ctx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            n = len(batch[0]) if isinstance(batch, (tuple, list)) and isinstance(batch[0], torch.Tensor) else 1
            self._loss[0] = self._loss[0] + loss.detach() * n  # a tensor: no device sync per step
            self._loss[1] += n
        for part in self.method.parts():
            if part.overrides("on_batch_end"):
                part.on_batch_end(self.ctx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        ctx = self.ctx
        train_loss = float(self._loss[0]) / self._loss[1] if self._loss[1] else float("nan")
        record = ctx.record_epoch(train_loss, self._epoch_start)
        bad = [k for k in ("train_loss", "val_loss") if not math.isfinite(record[k]) and
               (k == "val_loss" or self._loss[1])]
        if bad:
            log.warning("epoch %d: non-finite %s; no growth step", ctx.epoch, " and ".join(bad))
            events = []
        else:
            with torch.enable_grad():
                events = self._grow(ctx, record)
        self._loss = [0.0, 0]
        pl_module.log("growth/params", float(ctx.params), on_epoch=True)
        pl_module.log("growth/units_added", float(sum(e.units_added for e in events)), on_epoch=True)
        for part in self.method.parts():
            part.on_epoch_end(ctx, record=record)
        if ctx.stop_training and not trainer.should_stop:
            log.info("epoch %d: stopping (%s)", ctx.epoch, "; ".join(ctx.stop_reasons))
            trainer.should_stop = True

    def _grow(self, ctx: GrowthContext, record: dict) -> list:
        """The growth step (``selfexpand.train.growth_step``, as ``Trainer`` runs it, without its FLOP
        meter); each event logged at INFO."""
        start, parts = time.perf_counter(), self.method.parts()
        events, reason = growth_step.grow(self.method, parts, ctx, record)
        record["growth_seconds"] = time.perf_counter() - start
        for event in events:
            log.info("epoch %d: %s (%s)", ctx.epoch, event.line(), reason)
        growth_step.announce(parts, ctx, events, reason)
        return events

    def on_train_end(self, trainer, pl_module) -> None:
        for part in self.method.parts():
            part.on_train_end(self.ctx)


def _remove_preload(pl_module) -> None:
    """Take the callback's step off the module's ``on_load_checkpoint`` (the class's own hook remains)."""
    if getattr(vars(pl_module).get("on_load_checkpoint"), "selfexpand_preload", False):
        del vars(pl_module)["on_load_checkpoint"]


def _the_optimizer(trainer) -> torch.optim.Optimizer:
    """The trainer's one optimizer, unwrapped from Lightning's ``LightningOptimizer``."""
    optimizers = trainer.optimizers
    if len(optimizers) != 1:
        raise ConfigError(f"GrowthCallback carries the state of exactly one optimizer, got {len(optimizers)} "
                          f"from configure_optimizers")
    optimizer = optimizers[0]
    return optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer
