"""``SharedWeightsExtender``: SWE, new units integrated through trainable weight donations.

ALGORITHMS.md §2. For each layer with ``n_l > 0`` new units, the layer nearest the output first:
1. add ``n_l`` units: incoming weights Kaiming-uniform (``a = sqrt(5)``), outgoing weights 0, bias
   ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (``new_bias="kaiming"``, the paper) or, the default, the
   bias that puts each new unit's pre-activation at 0 on the median of the first 1,024 training
   examples (``new_bias="median"``: every new ReLU unit starts active on half of them);
2. couple them to the existing units with donations ``D_j ~ N(0, donation_std^2)``
   (``ops.attach_donations``): existing unit ``i`` uses ``w_i - sum_j D_j[i]``, new unit ``j`` uses
   ``w_j + sum_i D_j[i]``, so the layer's total incoming weight is conserved;
3. integration: ``integration_epochs`` epochs over the training set (epochs of the run) training the
   donations and the weights of the connections that read the layer, nothing else. Adam moves every
   donation entry by about its ``lr`` per step, and an existing unit's effective weight is the sum of
   ``n_new`` of them, so at the run's ``lr`` (``donation_lr="run"``, the paper) it moves up to ``n_new``
   times faster than any ordinary weight while the layers above are frozen; ``"per_unit"`` trains the
   donations at ``lr / n_new``, ``"per_sqrt_unit"`` (the preset) at ``lr / sqrt(n_new)``
   (docs/benchmarks.md, "SWE + SVoD", has the measured trade-off);
4. bake the donations into the weights (``ops.bake_donations``).

**The reference defect, fixed.** The reference zeroes the gradients of the layer's existing weights but
leaves them in Adam, whose L2 weight decay then moves them by about ``lr`` per step (their norms fell
by 88-99 % over one integration epoch). Here every parameter outside step 3's list has no gradient
at all during integration, so the optimizer skips it: no step, no decay, no state change; the
stored weights stay bit for bit, and the run's optimizer keeps its state. ``existing_rows="reference"``
reproduces the defect: integration runs a fresh optimizer of the run's kind and settings over the
donations, the reading weights and the layer's own weights and bias, whose gradients are zeroed; with
no history in its second moments, weight decay alone moves them by about ``lr`` per step.

Donations hold ``n_new * n_old * fan_in`` entries: a request above ``max_donation_entries`` fails
before the graph changes, naming the bound.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from ...ops import add_units
from ...ops.donations import DEFAULT_MAX_DONATION_ENTRIES, attach_donations, bake_donations, check_donation_bound
from ..base import Initializer, Site
from .new_units import layers_last_first, new_unit_values

__all__ = ["SharedWeightsExtender", "EXISTING_ROWS"]

log = logging.getLogger("selfexpand.strategies")

EXISTING_ROWS = ("frozen", "reference")
DONATION_LRS = ("per_unit", "per_sqrt_unit", "run")
NEW_BIASES = ("kaiming", "median")
MEDIAN_BATCH = 1024


class SharedWeightsExtender(Initializer):
    """SWE: add units with zero outgoing weights, integrate them through donations, bake.

    Args:
        donation_std: standard deviation of the initial donations (the paper's ``N(0, 1e-4)``, read as
            a standard deviation).
        integration_epochs: integration epochs per grown layer (counted as epochs of the run; fewer
            when the run's epoch budget is nearly spent).
        existing_rows: ``"frozen"`` (no update at all) or ``"reference"`` (the reference code's
            defect: zeroed gradients, weight decay still applied).
        donation_lr: ``"per_unit"`` (``lr / n_new``), ``"per_sqrt_unit"`` (``lr / sqrt(n_new)``) or
            ``"run"`` (the run's ``lr``, as the reference).
        new_bias: ``"median"`` (active on half the training examples at birth) or ``"kaiming"`` (the paper).
        max_donation_entries: bound on the donation entries of one layer.
    """

    def __init__(self, donation_std: float = 1e-4, *, integration_epochs: int = 1, existing_rows: str = "frozen",
                 max_donation_entries: int = DEFAULT_MAX_DONATION_ENTRIES, donation_lr: str = "per_sqrt_unit",
                 new_bias: str = "median"):
        if isinstance(donation_std, bool) or not isinstance(donation_std, (int, float)) or not donation_std >= 0:
            raise ConfigError(f"donation_std must be a number >= 0, got donation_std={donation_std!r}")
        if isinstance(integration_epochs, bool) or not isinstance(integration_epochs, int) or integration_epochs < 0:
            raise ConfigError(f"integration_epochs must be an integer >= 0, got integration_epochs={integration_epochs!r}")
        if existing_rows not in EXISTING_ROWS:
            raise ConfigError(f"existing_rows must be one of {list(EXISTING_ROWS)}, got existing_rows={existing_rows!r}")
        if isinstance(max_donation_entries, bool) or not isinstance(max_donation_entries, int) or max_donation_entries < 1:
            raise ConfigError(f"max_donation_entries must be a positive integer, got max_donation_entries={max_donation_entries!r}")
        if donation_lr not in DONATION_LRS:
            raise ConfigError(f"donation_lr must be one of {list(DONATION_LRS)}, got donation_lr={donation_lr!r}")
        if new_bias not in NEW_BIASES:
            raise ConfigError(f"new_bias must be one of {list(NEW_BIASES)}, got new_bias={new_bias!r}")
        self.donation_std, self.integration_epochs = float(donation_std), integration_epochs
        self.existing_rows, self.max_donation_entries = existing_rows, max_donation_entries
        self.donation_lr, self.new_bias = donation_lr, new_bias

    def grow(self, ctx, sites: list[Site]) -> list:
        net = ctx.model
        sites = layers_last_first(net, sites)
        for site in sites:  # refuse before anything changes
            check_donation_bound(net, site.layer, site.n_units, self.max_donation_entries)
        before = ctx.evaluate("val")[ctx.metric_name]
        events = []
        for site in sites:
            events += self._grow_layer(ctx, site)
        after = ctx.evaluate("val")[ctx.metric_name]
        events[-1].details.update({"val_metric_before": before, "val_metric_after": after})
        return events

    def _grow_layer(self, ctx, site: Site) -> list:
        net, layer, n = ctx.model, site.layer, site.n_units
        values = new_unit_values(net, layer, n, ctx.generator, outgoing="zero")
        if self.new_bias == "median":
            values["bias"] = _median_bias(ctx, layer, values["incoming"])
        added = add_units(net, layer, n, optimizer=ctx.optimizer, **values)
        added.details.update({k: v for k, v in site.info.items() if isinstance(v, (int, float, str))})
        lr_scale = {"per_unit": 1.0 / n, "per_sqrt_unit": n ** -0.5, "run": None}[self.donation_lr]
        donations = attach_donations(net, layer, n, std=self.donation_std, generator=ctx.generator,
                                     optimizer=ctx.optimizer, max_entries=self.max_donation_entries,
                                     lr_scale=lr_scale)
        trainable = donations + [c.weight for c in net.outgoing(layer)]
        own = [c.parametrizations.weight.original for c in net.incoming(layer) if c.out_index is None]
        own.append(net.layers[layer].parametrizations.bias.original)
        after_backward, optimizer = None, None
        if self.existing_rows == "reference":
            trainable += own
            optimizer = _fresh_like(ctx.optimizer, trainable)

            def after_backward():
                for p in own:
                    if p.grad is not None:
                        p.grad.zero_()

        epochs = self.integration_epochs
        if ctx.epochs_total > 0:
            epochs = min(epochs, max(0, ctx.epochs_total - ctx.epoch))
        if epochs < self.integration_epochs:
            log.warning("SWE: %d of %d integration epochs fit in the run's budget", epochs, self.integration_epochs)
        for _ in range(epochs):
            ctx.model_epoch(params=trainable, after_backward=after_backward, optimizer=optimizer,
                            phase="integration", site=layer)
        baked = bake_donations(net, layer, optimizer=ctx.optimizer)
        baked.details["integration_epochs"] = epochs
        return [added, baked]


def _fresh_like(optimizer, params: list):
    """A new optimizer of ``optimizer``'s class and settings (its first group's) over ``params``."""
    settings = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    return type(optimizer)(params, **settings)


@torch.no_grad()
def _median_bias(ctx, layer: str, incoming: dict) -> torch.Tensor:
    """Biases that put each new unit's pre-activation at 0 on the median of the first
    ``MEDIAN_BATCH`` training examples: every new ReLU unit starts active on half of them."""
    net = ctx.model
    was_training = net.training
    net.eval()
    outputs = net.layer_outputs(ctx.data.x_train[:MEDIAN_BATCH])
    net.train(was_training)
    pre = 0
    for name, rows in incoming.items():
        conn = net.connections[name]
        x = outputs[conn.source]
        if conn.in_index is not None:
            x = x.index_select(1, conn.in_index)
        pre = pre + F.linear(x, rows.to(x))
    return (-pre.median(0).values).cpu()
