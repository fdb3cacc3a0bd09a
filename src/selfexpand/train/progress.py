"""The CLI's progress bar (a trainer callback): epoch, losses, metric, params, growth events
(one line each, :meth:`selfexpand.ops.event.GrowthEvent.line`)."""

from __future__ import annotations

from tqdm import tqdm

from .callbacks import Callback

__all__ = ["ProgressBar"]


class ProgressBar(Callback):
    """One tqdm bar over the run's epochs; growth events are written above it as they happen."""

    def __init__(self):
        self.bar = None

    def on_train_begin(self, ctx, **kwargs) -> None:
        self.bar = tqdm(total=ctx.epochs_total, initial=ctx.epoch, unit="epoch", dynamic_ncols=True)

    def on_epoch_end(self, ctx, record: dict, **kwargs) -> None:
        self.bar.set_postfix(train_loss=f"{record['train_loss']:.4f}", val_loss=f"{record['val_loss']:.4f}",
                             **{f"val_{ctx.metric_name}": f"{record['val_metric']:.4f}"},
                             params=record["params"])
        self.bar.update(1)

    def on_grow_end(self, ctx, events: list, reason: str = "", **kwargs) -> None:
        for e in events:
            self.bar.write(f"epoch {ctx.epoch}: {e.line()}")

    def on_train_end(self, ctx, **kwargs) -> None:
        if self.bar is not None:
            self.bar.close()
