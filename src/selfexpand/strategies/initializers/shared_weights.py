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
   donation entry by about its ``lr`` per step; an existing unit's effective weight is the sum of
   ``n_new`` entries and a new unit's the sum of ``n_old``. While a new unit's outgoing weights are
   still about 0 its donations get the same gradient for every ``j`` (minus the existing units'), so
   every new unit takes, in lockstep, the mirror image of the *sum* of the existing units' steps:
   up to ``n_old`` times an ordinary step, in a direction that has nothing to do with the new unit,
   which is how new units died in integration (issue #22: most of SWE's inactive new units on
   digits). ``donation_lr`` sets the donations' rate: the run's ``lr`` (``"run"``, the paper),
   ``lr / n_new`` (``"per_unit"``), ``lr / sqrt(n_new)`` (``"per_sqrt_unit"``) or, the preset,
   ``lr / max(n_new, n_old)`` (``"bounded"``: no effective weight, old or new, moves faster than
   an ordinary weight);
4. bake the donations into the weights (``ops.bake_donations``); with ``revive`` (the preset), a new
   unit that is dead after integration (active on under 1 % of the first 1,024 training examples)
   gets the median bias of step 1 again, computed with its integrated weights.

**The budget.** A layer whose integration epochs no longer fit in the run's budget (growth at the
end of a short run) cannot be integrated: with zero outgoing weights and no epoch left to train them
its units would end silent. Such a layer's new units join with random (Kaiming) outgoing weights
and no donations, as SVoD + random's do, and the event says so (``integration_epochs: 0``,
``outgoing: "random"``).

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

**Conv layers** (``grows_channels``; a conv start, ``conv=[...]``). A channel is a unit. Step 1 adds
channels with ``nn.Conv2d``'s Kaiming-uniform kernels and zero outgoing kernels (zero position columns
in a dense reader at the flatten boundary); its batch norm, if any, starts at weight 1, bias 0. Step 2
donates over kernels (``ops.attach_donations``): ``D_j`` holds one incoming kernel ``(n_in, kh, kw)``
per existing channel, so existing channel ``i`` uses ``K_i - sum_j D_j[i]`` and new channel ``j``
``K_j + sum_i D_j[i]``, entry by entry; the bias is donated as for a dense layer. Step 3 trains the
donations and the connections that read the layer (outgoing kernels, or the dense reader's columns);
the layer's stored kernels, bias and batch-norm weight and bias take no update at all (bit for bit; the
batch norm's running statistics follow the batches, as in any training epoch). ``new_bias="median"``
takes the median over the first 1,024 examples *and* their positions (half of a new channel's
pre-activations start positive). ``revive`` takes a conv channel's activity over examples and
positions too, and leaves a layer with batch norm alone: in training mode the batch statistics
re-centre every channel, its pre-norm bias cancels out, so a bias cannot revive it.
The function is not preserved, as for a dense layer: the donations start at ``N(0, donation_std^2)``
(``donation_std=0``: the outputs are unchanged until integration trains them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...graph.conv import ConvConnection, ConvLayer
from ...ops import add_units
from ...ops.donations import DEFAULT_MAX_DONATION_ENTRIES, attach_donations, bake_donations, check_donation_bound
from ...settings import setting
from ...spaces import Categorical, Int, LogFloat
from ...validators import Boolean, Choice, Integer, Number
from ..base import Initializer, Site
from ..registry import register_part
from ..topology import layers_last_first
from ..unit_values import new_unit_values

__all__ = ["SharedWeightsExtender", "EXISTING_ROWS"]

log = logging.getLogger("selfexpand.strategies")

EXISTING_ROWS = ("frozen", "reference")
DONATION_LRS = ("per_unit", "per_sqrt_unit", "run", "bounded")
NEW_BIASES = ("kaiming", "median")
MEDIAN_BATCH = 1024
DEAD_ACTIVE = 0.01  # active on fewer examples than this fraction: dead (as report.inactivity)


@register_part
@dataclass(eq=False)
class SharedWeightsExtender(Initializer):
    """SWE: add units with zero outgoing weights, integrate them through donations, bake.

    ``existing_rows="reference"`` is the reference code's defect (zeroed gradients, weight decay still
    applied to the existing rows); ``donation_lr="run"``, ``new_bias="kaiming"`` and ``revive=False``
    are the paper's.
    """

    name = "swe"
    grows_channels = True  # conv layers: donations over kernels (module docstring)
    donation_std: float = setting(Number(0), 1e-4, "standard deviation of the initial donations "
                                                   "(the paper's N(0, 1e-4), read as a standard deviation)",
                                  space=LogFloat(1e-6, 1e-2))
    integration_epochs: int = setting(Integer(0), 1, "integration epochs per grown layer (epochs of the run; "
                                                     "fewer when the budget is nearly spent)",
                                      space=Int(0, 3))
    existing_rows: str = setting(Choice(*EXISTING_ROWS), "frozen", "existing rows during integration: frozen "
                                                                   "(no update at all) or reference (its defect)")
    donation_lr: str = setting(Choice(*DONATION_LRS), "per_sqrt_unit",
                               "donations' learning rate: lr / n_new, lr / sqrt(n_new), the run's lr or "
                               "lr / max(n_new, n_old) (bounded)", space=Categorical(list(DONATION_LRS)))
    new_bias: str = setting(Choice(*NEW_BIASES), "median",
                            "new biases: median (active on half the examples at birth) or kaiming (the paper)",
                            space=Categorical(list(NEW_BIASES)))
    revive: bool = setting(Boolean(), False, "after baking, new units dead on the first 1,024 training examples "
                                             "get the median bias again")
    max_donation_entries: int = setting(Integer(1), DEFAULT_MAX_DONATION_ENTRIES,
                                        "bound on the donation entries of one layer (a larger request fails cleanly)")

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
        epochs = self.integration_epochs
        if ctx.epochs_total > 0:
            epochs = min(epochs, max(0, ctx.epochs_total - ctx.epoch))
        if epochs < self.integration_epochs:
            log.warning("SWE: %d of %d integration epochs fit in the run's budget", epochs, self.integration_epochs)
        if epochs == 0 and self.integration_epochs > 0:
            # no integration epoch left: nothing would ever train zero outgoing weights, so the units
            # join with random ones and no donations
            added = self._add(ctx, site, "random")
            added.details.update(integration_epochs=0, outgoing="random")
            return [added]
        added = self._add(ctx, site, "zero")
        n_old = net.layers[layer].size - n
        lr_scale = {"per_unit": 1.0 / n, "per_sqrt_unit": n ** -0.5, "run": None,
                    "bounded": 1.0 / max(n, n_old)}[self.donation_lr]
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

        for _ in range(epochs):
            ctx.model_epoch(params=trainable, after_backward=after_backward, optimizer=optimizer,
                            phase="integration", site=layer)
        baked = bake_donations(net, layer, optimizer=ctx.optimizer)
        baked.details["integration_epochs"] = epochs
        if self.revive:
            baked.details["revived"] = revive_dead_units(ctx, layer, n)
        return [added, baked]

    def _add(self, ctx, site: Site, outgoing: str):
        """``add_units`` at the site: Kaiming incoming weights, ``outgoing`` outgoing ones, the bias
        ``new_bias`` says; the site's numeric details on the event."""
        net, layer, n = ctx.model, site.layer, site.n_units
        values = new_unit_values(net, layer, n, ctx.generator, outgoing=outgoing)
        if self.new_bias == "median":
            values["bias"] = _median_bias(ctx, layer, values["incoming"])
        added = add_units(net, layer, n, optimizer=ctx.optimizer, **values)
        added.details.update({k: v for k, v in site.info.items() if isinstance(v, (int, float, str))})
        return added

def _fresh_like(optimizer, params: list):
    """A new optimizer of ``optimizer``'s class and settings (its first group's) over ``params``."""
    settings = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    return type(optimizer)(params, **settings)


@torch.no_grad()
def _pre_activations(ctx, layer: str, incoming: dict) -> torch.Tensor:
    """Pre-activations (without bias) of rows ``incoming`` (connection name -> rows) of ``layer`` on
    the first ``MEDIAN_BATCH`` training examples: ``(examples, n)``, or for a conv layer's kernels
    ``(examples * positions, n)`` (every position of every example)."""
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
        if isinstance(conn, ConvConnection):
            pre = pre + F.conv2d(x, rows.to(x), None, conn.stride, conn.padding)
        else:  # a dense row; a spatial source is read flattened, channel-major (the flatten boundary)
            pre = pre + F.linear(x.flatten(1), rows.to(x))
    if pre.dim() == 4:
        pre = pre.permute(0, 2, 3, 1).reshape(-1, pre.shape[1])
    return pre


def _median_bias(ctx, layer: str, incoming: dict) -> torch.Tensor:
    """Biases that put each new unit's pre-activation at 0 on the median of the first
    ``MEDIAN_BATCH`` training examples: every new ReLU unit starts active on half of them."""
    return (-_pre_activations(ctx, layer, incoming).median(0).values).cpu()


@torch.no_grad()
def revive_dead_units(ctx, layer: str, n: int) -> int:
    """Give each of the last ``n`` units of ``layer`` that is active (pre-activation > 0) on fewer than
    ``DEAD_ACTIVE`` of the first ``MEDIAN_BATCH`` training examples the median bias for its current
    incoming weights (in place: the bias keeps its identity and optimizer state). Returns how many.
    A conv channel's activity is over examples and positions; a conv layer with batch norm is left
    alone (returns 0): its pre-norm bias cancels in training mode."""
    net = ctx.model
    target = net.layers[layer]
    if isinstance(target, ConvLayer) and target.norm is not None:
        return 0  # batch statistics re-centre the channel in training mode: its bias cannot revive it
    rows = {name: conn.effective_weight()[-n:] for name, conn in net.connections.items()
            if conn.target == layer and conn.out_index is None}
    pre = _pre_activations(ctx, layer, rows)
    bias = net.layers[layer].bias
    dead = ((pre + bias[-n:].to(pre)) > 0).double().mean(0) < DEAD_ACTIVE
    if dead.any():
        index = torch.nonzero(dead).flatten() + (bias.numel() - n)
        bias.index_copy_(0, index.to(bias.device), (-pre.median(0).values[dead]).to(bias))
    return int(dead.sum())
