"""GroMo's own conv growth (``gromo`` 0.1.0, TINY) side by side with this library's conv growth on the
CIFAR-10 subset (issue #24).

The task: the CIFAR-10 subset (``selfexpand.data.load_dataset("cifar10", seed=S)``: 3,200 train / 800
validation / 1,000 test images, pixels / 255), a small VGG-like network of three blocks (3x3 conv,
batch norm, ReLU, 2x2 max pooling) flattened into a linear layer to the 10 classes, starting at a
quarter of the full widths (4-8-16) and growing toward 16-32-64 on our ``cifar10`` rows' schedule:
each growth step gives each block ``ceil(0.25 x its channels)`` more, capped (4 -> 5 -> 7 -> 9 -> 12 ->
15 -> 16, 8 -> ... -> 32, 16 -> ... -> 64), after epochs 1 to 7 of 15 (the rows' 11 steps after each
of 20 epochs, scaled to 15 epochs by their ``tuned_epochs`` 20; steps that fall on one epoch are one
step; the 8th finds every block at its cap). 15 epochs of Adam lr 1e-3, batch 64. As in
``peer_gromo.py`` (the dense side by side, issue #16, whose helpers this script imports): every
system sees the same split, seed, batch size, learning rate and torch thread count, the same
batching (a fresh ``randperm`` of the training tensor each epoch, no ``DataLoader``) and the same
per-epoch validation pass; the systems of one seed run one after another (interleaved).

What GroMo 0.1.0 offers for conv growth (read from its installed source):

* ``Conv2dGrowingModule`` with two growth schemes, ``RestrictedConv2dGrowingModule`` (the new
  channels' outgoing kernels are 1x1 at the kernel's centre; the default of its containers) and
  ``FullConv2dGrowingModule`` (full outgoing kernels); ``GrowingBatchNorm2d`` grows with its conv.
  A growth step of layer L adds channels between L's predecessor and L (TINY: statistics,
  ``compute_optimal_updates``, a scaling factor, ``apply_change``).
* Containers ``gromo.containers.vgg.VGG`` / ``init_full_vgg_structure`` and
  ``gromo.containers.resnet``. The VGG container grows only a conv that is not the first of its
  stage (``allow_growing=not is_first_conv``), i.e. only channels between two convolutions with no
  pooling between them, and hidden classifier layers. Our network has one conv per stage and no hidden
  dense layer, so the VGG container would grow nothing here; the ResNet container grows the hidden
  channels of residual basic blocks, another architecture. So this benchmark wires GroMo's modules
  directly in a ``SequentialGrowingModel`` (GroMo's own sequential container base, whose
  ``set_growing_layers(index=i)`` picks the layer a growth step grows).
* GroMo cannot grow channels that pass through a max pooling before the next convolution: its conv
  statistics map the previous layer's output positions one-to-one onto the next layer's input
  positions (``update_input_size(compute_from_previous=True)``: "assuming its output size won't be
  affected by the post-layer function"). With ``MaxPool2d`` in the post-layer function the statistics
  pass fails (Restricted: "shape '[16, 28, 16, 16]' is invalid for input of size 458752"; Full:
  "einsum(): subscript l has size 256 ... 1024"). Nor can a ``LinearGrowingModule`` grow from a conv
  predecessor (its ``compute_m_prev_update`` takes linear predecessors only).

So GroMo's network (``gromo``, ``gromo-static``) is the closest one it can grow, and differs from ours
exactly here: each 2x2 max pooling is replaced by a stride of 2 in a convolution, and the final
linear layer is a convolution whose kernel covers the whole last map (the same function as flatten
+ linear, and GroMo's conv-to-conv growth then grows the last block). ``arch`` picks where the strides go:

* ``arch=stride3`` (default): every conv has stride 2 (maps 16, 8, 4, then a 4x4 head): the same
  parameters as ours (34,058 at 16-32-64, batch norm included), the same map sizes after each block,
  a quarter of the conv positions (each conv evaluated at the pooled resolution).
* ``arch=stride2``: the first conv at stride 1 (32x32), the next two at stride 2 (16, 8), an 8x8 head:
  each conv evaluated at our resolutions (32, 16, 8; the same multiply-adds), no last pooling, so the
  head is 4x ours (64,778 params at 16-32-64).

GroMo's growth loop: after each growth epoch, one GroMo growth step per block, block 1 then 2 then 3
(``set_growing_layers(index=b)``; GroMo's container applies one layer's change per step, and two
adjacent layers' changes cannot be applied from one statistics pass: each ``apply_change`` reshapes
the weights the other was computed for), each exactly ``peer_gromo.gromo_grow``: statistics over one
pass of the training set in eval mode (summed cross-entropy backward, ``update_computation``),
``compute_optimal_updates`` with the TINY hyper-parameters of its docstring (``compute_delta=False,
use_covariance=True, use_projection=True``), ``maximum_added_neurons`` = the block's planned width
minus its width now (TINY may propose fewer: recorded, and the next step asks for the rest),
``dummy_select_update``, a line search of the scaling factor over 0 / 0.1 / 0.5 / 1 by the training
loss of ``extended_forward``, ``apply_change``; then a fresh Adam (GroMo carries no optimizer state).
The new channels' batch norm starts at weight 1, bias 0 (``GrowingBatchNorm2d.grow``); during the line
search GroMo passes the extension through batch norm unchanged (``GrowingBatchNorm.extended_forward``).
Weights start as ``nn.Conv2d`` draws them (GroMo's modules' default; ours draw the same
``U(+-1/sqrt(fan_in))``).

Two GroMo 0.1.0 bugs are repaired after every ``apply_change`` (``_repair_gromo_conv``), else a conv
cannot grow twice: ``Conv2dGrowingModule.layer_in_extension`` / ``layer_out_extension`` re-create the
shape checks of its statistics S and M with the linear module's formula (``(C_in + 1) k^2`` rows, or
``C_in + 1``, instead of ``C_in k^2 + 1``), and ``RestrictedConv2dGrowingModule`` caches its
``bordering_weight`` sized for its predecessor's input channels at the first growth. The repair sets
the expected shapes and drops the cached kernel (GroMo rebuilds it); no statistic or update is changed.

Systems (``--systems``, comma-separated):

* ``gromo`` (``gromo[arch=stride2,conv=full,stat_batch=...,search_batch=...,factors=0;0.1;0.5;1,delta=1]``),
  ``gromo-static``: GroMo's network and loop at the final widths 16-32-64, no growth.
* ``static``: this library's ``static`` method, 16-32-64 with max pooling, same epochs / batch / lr.
* ``random``, ``zero``, ``net2net``, ``gradmax``, ``firefly``: their ``cifar10`` rows (``conv=[4, 8, 16]``,
  ``max_channels=[16, 32, 64]``, ``channel_fraction=0.25``) at 15 epochs, batch 64, lr 1e-3, started by
  ``build_start`` and trained by ``Trainer.fit`` as ``selfexpand.runs.train_run`` does (without the run
  directory). ``NAME[key=value,...]`` runs a preset with overrides. ``firefly`` runs, but when the
  published run was made its row scored candidates on 2,048 images and its conv growth was far slower than the rest: on the
  first 800 training images, seed 0, its row had not finished after 14 minutes (the other rows: 12-18 s
  there) and ``firefly[splits=false]`` took 137 s (127 s of growth), so the published command leaves it
  out. Its ``cifar10`` row now scores on 256 images (``presets/baselines.py``).

Per run: test and final validation accuracy, final ``params`` (weights + biases + batch norm's
weight and bias, GroMo's counted the same way), final widths, wall seconds of the whole training
(growth and per-epoch validation included, data loading excluded), growth seconds (ours:
``FitResult.growth_seconds``; GroMo: statistics + optimal update + line search + apply). Output: a JSON
file (per-run rows with GroMo's per-step choices and our growth events, per-system mean +- std, wall
ratios to ``static`` and to ``gromo``) and a Markdown table on stdout. The target column: the system's
mean test accuracy above ``gromo``'s and its mean wall time below it ("more accurate in less wall time").

    pip install --no-deps gromo==0.1.0 deprecated wrapt   # torchmetrics, lightning-utilities if missing
    python benchmarks/peer_gromo_conv.py --data-dir ../shared/data --seeds 0 1 2 --threads 1 \\
        --systems "gromo,gromo[stat_batch=512,search_batch=1024],gromo-static,static,random,zero,net2net,gradmax,gromo[arch=stride2],gromo-static[arch=stride2]" \\
        --out docs/results/peer_gromo_conv.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

# ``python benchmarks/peer_gromo_conv.py`` puts benchmarks/ first on sys.path: the dense side by side's
# protocol helpers are imported from it, not copied.
from peer_gromo import (
    accuracy,
    add_common_args,
    gromo_grow,
    gromo_loop,
    gromo_options,
    mean_std,
    parse_system,
    run_table,
    start_result,
    summary_entry,
)

from selfexpand.data import load_dataset
from selfexpand.presets import build_method, resolve_config
from selfexpand.presets.resolve import build_start
from selfexpand.strategies.budget import scale_epochs
from selfexpand.train.trainer import Trainer

OURS = ("static", "random", "zero", "net2net", "gradmax", "firefly")
GROMO_SYSTEMS = ("gromo", "gromo-static")
GROWING = "zero"  # the row whose schedule GroMo follows (every baseline's cifar10 row has the same one)
ARCHS = {"stride3": (2, 2, 2), "stride2": (1, 2, 2)}
INSTALL = ("gromo is not installed. It is needed by this benchmark only (not a dependency of selfexpand):\n"
           "    pip install --no-deps gromo==0.1.0 deprecated wrapt\n"
           "(--no-deps keeps the installed torch; gromo 0.1.0 also needs numpy, networkx, torchmetrics and "
           "lightning-utilities.)")


# ---------------------------------------------------------------------- the shared schedule
def row_settings(method: str, overrides: dict, args) -> dict:
    """Our ``cifar10`` row of ``method`` at this protocol's epochs, batch size and learning rate."""
    base = {"batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs}
    if method == "static":
        base.update(conv=list(args.final), hidden=[])
    return resolve_config(method, "cifar10", {**base, **overrides})


def growth_plan(args) -> dict[int, list[int]]:
    """``{epoch: widths after the growth step of that epoch}`` as our rows grow: the interval trigger's
    epochs (scaled by ``tuned_epochs``, steps of one epoch merged) and the selector's conv rule
    (``ceil(channel_fraction x channels)`` more per block, capped by ``max_channels``). Only steps that
    change a width are listed."""
    cfg = row_settings(GROWING, {}, args)
    epochs = sorted({scale_epochs(cfg["start"] + k * cfg["every"], cfg["tuned_epochs"], cfg["epochs"])
                     for k in range(cfg["times"])})
    widths, plan = list(cfg["conv"]), {}
    for epoch in epochs:
        if epoch > cfg["epochs"]:
            break
        new = [min(cap, w + math.ceil(cfg["channel_fraction"] * w - 1e-9)) for w, cap in zip(widths, cfg["max_channels"])]
        if new != widths:
            plan[epoch] = widths = new
    return plan


# ---------------------------------------------------------------------- GroMo
_GROMO = {}


def import_gromo():
    """GroMo's conv modules and a small sequential container of them (built once)."""
    if _GROMO:
        return _GROMO
    try:
        from gromo.containers.sequential_growing_container import SequentialGrowingModel
        from gromo.modules.conv2d_growing_module import (
            FullConv2dGrowingModule,
            RestrictedConv2dGrowingModule,
        )
        from gromo.modules.growing_normalisation import GrowingBatchNorm2d
    except ImportError as exc:
        raise SystemExit(f"{INSTALL}\n(import failed: {exc})") from None

    class GromoConvNet(SequentialGrowingModel):
        """Conv blocks (GroMo conv, ``GrowingBatchNorm2d``, ReLU) and a conv head over the whole last map;
        layer ``b + 1`` (the next block, or the head) is the growable layer that grows block ``b``."""

        def __init__(self, widths, strides, conv_type, in_channels=3, classes=10, size=32):
            super().__init__(in_channels, classes)
            modules, previous, c_in = [], None, in_channels
            for i, (width, stride) in enumerate(zip(widths, strides)):
                post = torch.nn.Sequential(GrowingBatchNorm2d(width), torch.nn.ReLU())
                conv = conv_type(c_in, width, 3, stride=stride, padding=1, post_layer_function=post,
                                 previous_module=previous, allow_growing=previous is not None, name=f"block{i}")
                modules.append(conv)
                previous, c_in, size = conv, width, (size - 1) // stride + 1
            modules.append(conv_type(c_in, classes, size, previous_module=previous, allow_growing=True, name="head"))
            self.blocks = torch.nn.ModuleList(modules)
            self._growable_layers = modules[1:]
            self.set_growing_layers(scheduling_method="all")

        def forward(self, x):
            for module in self.blocks:
                x = module(x)
            return x.flatten(1)

        def extended_forward(self, x, mask=None):
            x_ext = None
            for module in self.blocks:
                x, x_ext = module.extended_forward(x, x_ext)
            return x.flatten(1)

        def widths(self) -> list[int]:
            return [module.out_channels for module in self.blocks[:-1]]

    _GROMO.update(net=GromoConvNet, restricted=RestrictedConv2dGrowingModule, full=FullConv2dGrowingModule)
    return _GROMO


def _repair_gromo_conv(model) -> None:
    """Fix GroMo 0.1.0's stale conv bookkeeping after a growth (see the module docstring): the expected
    shapes of S and M, and Restricted's cached bordering kernel. Changes no statistic or weight."""
    for module in model.blocks:
        rows = module.in_channels * module.kernel_size[0] * module.kernel_size[1] + module.use_bias
        module._tensor_s._shape = (rows, rows)
        module.tensor_m._shape = (rows, module.out_channels)
        if hasattr(module, "bordering_weight"):
            module.bordering_weight = None


def gromo_settings(overrides: dict, args) -> tuple[dict, str, str]:
    overrides = dict(overrides)
    arch = overrides.pop("arch", args.gromo_arch)
    conv = overrides.pop("conv", "restricted")
    if arch not in ARCHS:
        raise ValueError(f"gromo arch must be one of {sorted(ARCHS)}, got {arch!r}")
    if conv not in ("restricted", "full"):
        raise ValueError(f"gromo conv must be restricted or full, got {conv!r}")
    return gromo_options(overrides, args), arch, conv


def run_gromo(ds, seed: int, args, grow: bool, overrides: dict | None = None) -> dict:
    gromo = import_gromo()
    opts, arch, conv = gromo_settings(overrides or {}, args)
    plan = growth_plan(args) if grow else {}
    torch.manual_seed(seed)
    start_widths = row_settings(GROWING, {}, args)["conv"] if grow else list(args.final)
    model = gromo["net"](start_widths, ARCHS[arch], gromo[conv])

    def grow_after(epoch):
        steps = []
        for block, target in enumerate(plan.get(epoch, [])):
            asked = target - model.widths()[block]
            if asked <= 0:
                continue
            model.set_growing_layers(index=block)
            step = gromo_grow(model, ds, opts, asked)
            _repair_gromo_conv(model)
            step.update(epoch=epoch, block=block, asked=asked, widths=model.widths())
            steps.append(step)
        if epoch in plan:
            model.set_growing_layers(scheduling_method="all")
        return steps

    row, steps = gromo_loop(model, ds, seed, args, grow_after)
    return {**row, "widths": model.widths(), "gromo_options": {**opts, "arch": arch, "conv": conv}, "plan": plan,
            "asked": sum(s["asked"] for s in steps), "added": sum(s["units_proposed"] for s in steps)}


# ---------------------------------------------------------------------- ours
def run_ours(ds, seed: int, method: str, overrides: dict, args) -> dict:
    cfg = row_settings(method, overrides, args)
    model = build_start(method, cfg, ds, seed)
    trainer = Trainer.from_settings(build_method(method, cfg), cfg, seed=seed)
    start = time.perf_counter()
    result = trainer.fit(model, ds)
    wall = time.perf_counter() - start
    records = result.history.records
    epochs = [r for r in records if r["type"] == "epoch"]
    net = result.model
    widths = [net.layers[name].size for name in net.hidden_layers()]
    events = [[r["epoch"], r["site"], r.get("kind"), r.get("units_added", 0)] for r in records if r["type"] == "growth"]
    return {"test_acc": accuracy(net, ds.x_test, ds.y_test), "val_acc": epochs[-1]["val_metric"],
            "params": net.counts()["params"], "widths": widths, "wall_s": wall, "growth_s": result.growth_seconds,
            "train_s": result.train_seconds, "growth_events": events, "settings": {k: cfg[k] for k in sorted(cfg)}}


# ---------------------------------------------------------------------- summary
def summarize(rows: list[dict], systems: list[str]) -> dict:
    """Per system: mean +- std of the figures, wall ratios to ``static`` and ``gromo`` (per seed, then
    averaged), and for ours whether it is more accurate than ``gromo`` in less wall time (means), with
    the seeds on which both hold."""
    ok_rows = [r for r in rows if "error" not in r]
    wall_of = {name: {r["seed"]: r["wall_s"] for r in ok_rows if r["system"] == name} for name in ("static", "gromo")}
    gromo_row = {r["seed"]: r for r in ok_rows if r["system"] == "gromo"}
    out = {}
    for system in systems:
        ok = [r for r in ok_rows if r["system"] == system]
        if not ok:
            continue
        entry = summary_entry(ok)
        entry["widths"] = [r["widths"] for r in ok]
        for name, walls in wall_of.items():
            ratios = [r["wall_s"] / walls[r["seed"]] for r in ok if r["seed"] in walls]
            if ratios:
                entry[f"wall_ratio_to_{name}"] = mean_std(ratios)
        out[system] = entry
    gromo = out.get("gromo")
    if gromo:
        for system, entry in out.items():
            if parse_system(system)[0] in GROMO_SYSTEMS:
                continue
            entry["meets_target"] = entry["test_acc"][0] > gromo["test_acc"][0] and entry["wall_s"][0] < gromo["wall_s"][0]
            entry["seeds_meeting_target"] = sum(
                1 for r in ok_rows if r["system"] == system and r["seed"] in gromo_row
                and r["test_acc"] > gromo_row[r["seed"]]["test_acc"] and r["wall_s"] < gromo_row[r["seed"]]["wall_s"])
    return out


def markdown(summary: dict) -> str:
    lines = [("| system | runs | test acc | val acc | params | final widths | wall s | growth s | wall / static | "
              "wall / gromo | more accurate in less wall time than gromo |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for system, e in summary.items():
        def f(key, fmt, e=e):
            if key not in e:
                return "-"
            m, s = e[key]
            return f"{m:{fmt}} ± {s:{fmt}}"
        widths = sorted({"-".join(map(str, w)) for w in e["widths"]})
        target = "-" if "meets_target" not in e else \
            f"{'yes' if e['meets_target'] else 'no'} ({e['seeds_meeting_target']} of {e['runs']} seeds)"
        lines.append(f"| {system} | {e['runs']} | {f('test_acc', '.4f')} | {f('val_acc', '.4f')} | "
                     f"{e['params'][0]:,.0f} | {', '.join(widths)} | {f('wall_s', '.1f')} | {f('growth_s', '.1f')} | "
                     f"{f('wall_ratio_to_static', '.2f')} | {f('wall_ratio_to_gromo', '.2f')} | {target} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p, "gromo,gromo-static,static,random,zero,net2net,gradmax",
                    "comma-separated: gromo, gromo-static, static, random, zero, net2net, gradmax, firefly, "
                    "or NAME[key=value,...] with overrides (ours: settings; gromo: arch, conv, stat_batch, "
                    "search_batch, factors, delta)", epochs=15)
    p.add_argument("--final", type=int, nargs=3, default=[16, 32, 64], help="widths of the static networks")
    p.add_argument("--gromo-arch", default="stride3", choices=sorted(ARCHS),
                   help="where GroMo's network downsamples (it cannot grow across a max pooling)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N training images (smoke tests)")
    args = p.parse_args(argv)
    systems, result = start_result(
        args, OURS, import_gromo, "one of ours more accurate (mean test accuracy) in less wall time (mean) than gromo",
        {"dataset": "cifar10 subset", "split": "selfexpand load_dataset(seed): 3200/800/1000",
         "limit": args.limit, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
         "optimizer": "adam", "final_widths": args.final,
         "growth_plan": {str(k): v for k, v in growth_plan(args).items()},
         "gromo_arch": args.gromo_arch, "gromo_factors": args.gromo_factors,
         "gromo_stat_batch": args.gromo_stat_batch or args.batch_size,
         "gromo_search_batch": args.gromo_search_batch or args.batch_size})

    def load(seed: int):
        ds = load_dataset("cifar10", data_dir=args.data_dir, seed=seed)
        if args.limit:
            ds.x_train, ds.y_train = ds.x_train[:args.limit], ds.y_train[:args.limit]
        return ds

    return run_table(result, args, systems, load, run_gromo, run_ours, summarize, markdown,
                     describe=lambda row: f"widths {row['widths']} ")


if __name__ == "__main__":
    sys.exit(main())
