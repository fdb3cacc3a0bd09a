"""``selfexpand.lightning.GrowthCallback`` with a real ``lightning.Trainer`` on the CPU: growth at epoch ends,
the optimizer's state carried bit for bit, a resumed run equal to an uninterrupted one, and the refusals.
Without the ``lightning`` package these tests skip (fail under ``CI=true``: every extra is required there)."""

from __future__ import annotations

import logging
import runpy
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from extras import missing_extra

try:
    import lightning as L
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
except ImportError as exc:
    missing_extra(f"the Lightning integration needs the lightning extra (pip install -e '.[lightning]'): {exc}",
                  module_level=True)

from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from selfexpand import GrowableNet
from selfexpand.errors import CheckpointError, ConfigError
from selfexpand.lightning import GrowthCallback, check_single_device
from selfexpand.lightning_ckpt import restore_architecture

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lightning_growth.py"
EVERY_EPOCH = {"every": 1, "units": 4, "times": None, "tuned_epochs": None}  # random: +4 units after each epoch
# edge grows early and often (tests/train/test_tensorboard.py's GROW_FAST): a new layer, new parameters
EDGE_FAST = {"min_gap": 1, "window": 1, "plateau_threshold": 100.0, "prune_after": 1, "max_new": 8}


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data[:800] / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target[:800])
    return x[:600], y[:600], x[600:], y[600:]


class Classifier(L.LightningModule):
    def __init__(self, net: torch.nn.Module | None = None, scheduler: bool = False):
        super().__init__()
        self.net = net if net is not None else GrowableNet.mlp([64, 16, 10], seed=0)
        self.scheduler = scheduler

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", F.cross_entropy(self.net(batch[0]), batch[1]))

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=3e-3)
        if not self.scheduler:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.9)}


def _loaders(digits, *, shuffle=False):
    x, y, xv, yv = digits
    train = TensorDataset(x, y)
    # a shuffled order that a resumed run repeats: Lightning calls set_epoch with the epoch number
    sampler = DistributedSampler(train, num_replicas=1, rank=0, shuffle=True, seed=0) if shuffle else None
    return DataLoader(train, batch_size=32, sampler=sampler), DataLoader(TensorDataset(xv, yv), batch_size=200)


def _trainer(epochs, tmp_path, callbacks, **kwargs):
    settings = dict(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, deterministic=True,
                    default_root_dir=tmp_path, callbacks=callbacks)
    return L.Trainer(**{**settings, **kwargs})


def _records(callback):
    """The callback's epoch and growth records without their timings."""
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in callback.ctx.history.records]


def test_a_lightning_trainer_grows_the_network_and_keeps_its_scheduler(digits, tmp_path, caplog):
    L.seed_everything(0, verbose=False)
    model = Classifier(scheduler=True)
    growth = GrowthCallback("random", dataset="digits", **EVERY_EPOCH)
    trainer = _trainer(3, tmp_path, [growth])
    with caplog.at_level(logging.INFO, logger="selfexpand.lightning"):
        trainer.fit(model, *_loaders(digits))
    assert model.net.widths() == [64, 28, 10]  # 16 + 3 x 4
    events = growth.ctx.history.growth()
    assert [(r["epoch"], r["kind"], r["site"], r["units_added"]) for r in events] == \
           [(e, "add_units", "h1", 4) for e in (1, 2, 3)]
    assert [r["epoch"] for r in growth.ctx.history.epochs()] == [1, 2, 3]
    assert sum("add_units at h1: +4 units" in m for m in caplog.messages) == 3
    assert float(trainer.callback_metrics["growth/params"]) == model.net.params
    optimizer = trainer.optimizers[0]
    assert growth.ctx.optimizer is optimizer  # the raw torch optimizer, grown in place
    assert trainer.lr_scheduler_configs[0].scheduler.optimizer is optimizer
    tracked = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert all(id(p) in tracked and p in optimizer.state for p in model.net.parameters())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-3 * 0.9 ** 3)
    assert "on_load_checkpoint" not in vars(model)  # the pre-load step lasts one fit


class _Capture(Callback):
    """The optimizer's state by parameter name at on_train_epoch_end (before or after GrowthCallback's)."""

    def __init__(self):
        self.seen = []

    def on_train_epoch_end(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        self.seen.append({name: {k: v.clone() for k, v in optimizer.state[p].items()}
                          for name, p in pl_module.net.named_parameters()})


def test_the_optimizer_state_of_old_entries_is_bit_identical_across_a_growth(digits, tmp_path):
    L.seed_everything(0, verbose=False)
    model = Classifier()
    before, after = _Capture(), _Capture()
    growth = GrowthCallback("random", dataset="digits", **EVERY_EPOCH)
    _trainer(1, tmp_path, [before, growth, after]).fit(model, *_loaders(digits))
    old, new = before.seen[0], after.seen[0]
    assert set(old) == set(new)
    grown = 0
    for name, state in old.items():
        for key, value in state.items():
            if key == "step":
                assert torch.equal(new[name][key], value), name
                continue
            fresh = new[name][key]
            head = tuple(slice(0, n) for n in value.shape)
            assert torch.equal(fresh[head], value), (name, key)  # old entries: the same bits
            if fresh.shape != value.shape:
                grown += 1
                rest = fresh.clone()
                rest[head] = float("nan")
                rest = rest[~rest.isnan()]
                expected = 0.0 if key == "exp_avg" else value.mean()
                assert torch.allclose(rest, torch.full_like(rest, float(expected))), (name, key)
    assert grown == 6  # exp_avg and exp_avg_sq of input_to_h1, h1's bias and h1_to_output


@pytest.mark.parametrize("method, settings, at_train_epoch_end", [
    ("random", EVERY_EPOCH, True),
    ("random", EVERY_EPOCH, False),  # saved at the epoch's validation end: the growth step still to come
    ("edge", EDGE_FAST, True),  # a new layer: new parameters appended to the optimizer
])
def test_a_resumed_fit_equals_an_uninterrupted_one(digits, tmp_path, method, settings, at_train_epoch_end):
    k, m = 2, 2

    def run(epochs, callbacks, ckpt_path=None):
        L.seed_everything(0, verbose=False)
        model = Classifier()
        growth = GrowthCallback(method, dataset="digits", epochs=k + m, **settings)
        trainer = _trainer(epochs, tmp_path, [growth, *callbacks], enable_checkpointing=bool(callbacks))
        trainer.fit(model, *_loaders(digits, shuffle=True), ckpt_path=ckpt_path)
        return model, growth, trainer

    whole, whole_growth, whole_trainer = run(k + m, [])
    saver = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, save_on_train_epoch_end=at_train_epoch_end)
    first, first_growth, _ = run(k, [saver])
    assert first_growth.ctx.history.growth(), "growth before the checkpoint"
    assert first.net.widths() != [64, 16, 10]
    saved = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)
    assert saved["callbacks"][first_growth.state_key]["epoch"] == (k if at_train_epoch_end else k - 1)
    resumed, resumed_growth, resumed_trainer = run(k + m, [], ckpt_path=tmp_path / "ck" / "last.ckpt")

    assert [r["epoch"] for r in resumed_growth.ctx.history.growth()][-1] > k, "growth after the checkpoint"
    assert _records(resumed_growth) == _records(whole_growth)  # losses, metrics, counts, growth events
    assert resumed.net.spec() == whole.net.spec()
    mine, theirs = resumed.state_dict(), whole.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[key], theirs[key]) for key in mine), [k for k in mine if not torch.equal(mine[k], theirs[k])]
    opt_mine, opt_theirs = resumed_trainer.optimizers[0], whole_trainer.optimizers[0]
    named = dict(resumed.named_parameters())
    for name, p in whole.named_parameters():
        for key, value in opt_theirs.state[p].items():
            assert torch.equal(opt_mine.state[named[name]][key], value), (name, key)


def test_the_checkpoint_holds_the_architecture_for_load_from_checkpoint(digits, tmp_path):
    class Restoring(Classifier):
        def on_load_checkpoint(self, checkpoint):
            restore_architecture(self, checkpoint)  # what load_from_checkpoint needs (the callback is not there)

    L.seed_everything(0, verbose=False)
    model = Restoring()
    trainer = _trainer(2, tmp_path, [GrowthCallback("random", dataset="digits", **EVERY_EPOCH)])
    trainer.fit(model, *_loaders(digits))
    trainer.save_checkpoint(tmp_path / "grown.ckpt")
    saved = torch.load(tmp_path / "grown.ckpt", weights_only=True)  # plain data: no pickled classes
    assert saved["selfexpand"]["spec"] == model.net.spec()
    assert saved["selfexpand"]["net_attr"] == "net"
    loaded = Restoring.load_from_checkpoint(tmp_path / "grown.ckpt")
    assert loaded.net.widths() == model.net.widths() == [64, 24, 10]
    x = digits[2][:5]
    assert torch.equal(loaded.net(x), model.net(x))


def test_the_raw_optimizer_is_grown_not_lightnings_wrapper():
    from lightning.pytorch.core.optimizer import LightningOptimizer

    from selfexpand.lightning import _the_optimizer

    optimizer = torch.optim.Adam(GrowableNet.mlp([4, 3, 2], seed=0).parameters())
    assert _the_optimizer(types.SimpleNamespace(optimizers=[LightningOptimizer(optimizer)])) is optimizer
    assert _the_optimizer(types.SimpleNamespace(optimizers=[optimizer])) is optimizer


def test_more_than_one_device_is_refused():
    fake = types.SimpleNamespace(num_devices=2, world_size=2, strategy=object())
    with pytest.raises(ConfigError, match="one device only.*devices=2"):
        check_single_device(fake)
    ddp = L.Trainer(accelerator="cpu", devices=1, strategy="ddp", logger=False)  # not started: nothing spawns
    with pytest.raises(ConfigError, match="strategy=DDPStrategy"):
        check_single_device(ddp)
    check_single_device(L.Trainer(accelerator="cpu", devices=1, logger=False))


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "no-such-method"}, "method must be one of"),
    ({"method": "random", "no_such_setting": 1}, "setting must be one of"),
    ({"method": "random", "lr": 0.1}, "Lightning's to set"),
    ({"method": "random", "hidden": [8]}, "settings of the start network"),
    ({"method": "size-weight"}, "grows its own start network"),
    ({"method": "random", "growth_warmup": 0.1}, "growth-aware learning rates"),
])
def test_bad_arguments_are_refused_at_once(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GrowthCallback(**kwargs)


class _NoGrowableNet(Classifier):
    def __init__(self):
        super().__init__(net=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))


class _TwoOptimizers(Classifier):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False  # Lightning's way to have two

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self.net(batch[0]), batch[1])
        self.manual_backward(loss)
        for optimizer in self.optimizers():
            optimizer.step()
            optimizer.zero_grad()
        return loss

    def configure_optimizers(self):
        params = list(self.parameters())
        return [torch.optim.Adam(params[:1]), torch.optim.Adam(params[1:])]


class _DictBatches(Classifier):
    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.net(batch["x"]), batch["y"])


@pytest.mark.parametrize("module, callback, loaders, error, match", [
    (_NoGrowableNet, {}, None, ConfigError, "holds no GrowableNet: searched the attribute 'net' and every submodule"),
    (Classifier, {"net_attr": "body"}, None, ConfigError, "net_attr must name a GrowableNet.*'body'"),
    (_TwoOptimizers, {}, None, ConfigError, "exactly one optimizer, got 2"),
    (Classifier, {"data": (1, 2)}, None, ConfigError, "data must be a selfexpand.data.Dataset or a tuple of 4"),
    (_DictBatches, {}, "dicts", ConfigError, "must yield \\(x, y\\) pairs of tensors"),
    (Classifier, {}, "no-val", ConfigError, "needs validation data"),
])
def test_a_module_or_data_it_cannot_grow_is_refused_clearly(digits, tmp_path, module, callback, loaders, error, match):
    train, val = _loaders(digits)
    if loaders == "dicts":
        x, y = digits[0], digits[1]
        rows = [{"x": x[i], "y": y[i]} for i in range(64)]
        train = DataLoader(rows, batch_size=32)
    fit = (train,) if loaders == "no-val" else (train, val)
    growth = GrowthCallback("random", dataset="digits", **EVERY_EPOCH, **callback)
    model = module()
    with pytest.raises(error, match=match):
        _trainer(1, tmp_path, [growth], limit_val_batches=0 if loaders == "no-val" else None).fit(model, *fit)
    assert "on_load_checkpoint" not in vars(model)  # the callback's pre-load step is gone after a failed fit


def test_a_checkpoint_of_another_method_is_refused(digits, tmp_path):
    L.seed_everything(0, verbose=False)
    trainer = _trainer(1, tmp_path, [GrowthCallback("random", dataset="digits", **EVERY_EPOCH)])
    trainer.fit(Classifier(), *_loaders(digits))
    trainer.save_checkpoint(tmp_path / "random.ckpt")
    other = _trainer(2, tmp_path, [GrowthCallback("zero", dataset="digits", **EVERY_EPOCH)])
    with pytest.raises(CheckpointError, match="of method 'random'.*runs 'zero'"):
        other.fit(Classifier(), *_loaders(digits), ckpt_path=tmp_path / "random.ckpt")


def test_given_tensors_serve_as_the_growth_data(digits, tmp_path):
    L.seed_everything(0, verbose=False)
    growth = GrowthCallback("random", dataset="digits", data=digits, **EVERY_EPOCH)
    model = Classifier()
    _trainer(1, tmp_path, [growth]).fit(model, *_loaders(digits))
    assert growth.ctx.data.task == "classification" and growth.ctx.data.x_train.shape == (600, 64)
    assert model.net.widths() == [64, 20, 10]


def test_the_example_runs(monkeypatch, capsys):
    monkeypatch.setenv("SELFEXPAND_EXAMPLE_EPOCHS", "1")
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "start widths: [64, 16, 10]" in out
    assert "after 1 epochs: [64, 20, 10]" in out
    assert "resumed to 3 epochs: [64, 28, 10]" in out
