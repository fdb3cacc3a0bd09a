"""Grow a network inside a PyTorch Lightning ``LightningModule`` with ``selfexpand.lightning.GrowthCallback``.

A 64-16-10 ReLU network learns scikit-learn's 8x8 digits; the ``random`` method adds 4 units to the
hidden layer after every epoch (its ``digits`` row, with the schedule set here), Lightning trains,
validates and checkpoints. Then a second ``Trainer`` resumes the checkpoint for two more epochs: the
grown architecture is rebuilt before the weights load, and growth goes on.

    pip install lightning
    python examples/lightning_growth.py            # SELFEXPAND_EXAMPLE_EPOCHS=2 for a shorter run
"""

from __future__ import annotations

import os
import tempfile

import lightning as L
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from selfexpand import GrowableNet
from selfexpand.lightning import GrowthCallback


class DigitsClassifier(L.LightningModule):
    def __init__(self, lr: float = 3e-3):
        super().__init__()
        self.lr = lr
        self.net = GrowableNet.mlp([64, 16, 10], seed=0)  # the callback finds it as `net`

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):  # built after a resumed network is rebuilt: it sees the grown parameters
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def loaders():
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, val = order[:1400], order[1400:]
    return (DataLoader(TensorDataset(x[train], y[train]), batch_size=32, shuffle=True),
            DataLoader(TensorDataset(x[val], y[val]), batch_size=256))


def trainer(epochs: int, folder: str, callback: GrowthCallback) -> L.Trainer:
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=folder, save_last=True)
    return L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, deterministic=True, default_root_dir=folder,
                     callbacks=[callback, checkpoints])


def main() -> None:
    epochs = int(os.environ.get("SELFEXPAND_EXAMPLE_EPOCHS", "4"))
    L.seed_everything(0, verbose=False)
    train, val = loaders()
    with tempfile.TemporaryDirectory() as folder:
        model = DigitsClassifier()
        print("start widths:", model.net.widths())
        # grow 4 units after every epoch; `epochs` is the planned length (the resumed run's too)
        growth = GrowthCallback("random", dataset="digits", every=1, units=4, times=None, epochs=epochs + 2)
        trainer(epochs, folder, growth).fit(model, train, val)
        print(f"after {epochs} epochs:", model.net.widths(), f"params {model.net.params}")
        for record in growth.ctx.history.growth():
            print(f"  epoch {record['epoch']}: {record['kind']} at {record['site']} +{record['units_added']} units")

        resumed = DigitsClassifier()  # a fresh 64-16-10 module: the checkpoint's architecture replaces its net
        growth = GrowthCallback("random", dataset="digits", every=1, units=4, times=None, epochs=epochs + 2)
        fit = trainer(epochs + 2, folder, growth)
        fit.fit(resumed, train, val, ckpt_path=os.path.join(folder, "last.ckpt"))
        print(f"resumed to {epochs + 2} epochs:", resumed.net.widths(),
              f"val_acc {float(fit.callback_metrics['val_acc']):.3f}")
        plain = resumed.net.export()  # a plain torch module of the final size
        print("exported:", plain)


if __name__ == "__main__":
    main()
