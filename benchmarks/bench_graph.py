#!/usr/bin/env python
"""Speed of the graph core, as ratios measured in one process run.

1. Training step (forward, cross-entropy, backward, Adam) of ``GrowableNet.mlp`` against the same
   architecture as ``nn.Sequential`` of ``nn.Linear`` / ``nn.ReLU`` (784-100-10, 784-512-512-10).
2. ``ops.add_units``: 64 units into a 784-512-10 MLP whose Adam optimizer has state (carry-over
   included), random incoming values, zero outgoing.
3. An edge-expanded network (784 -> 10 direct, plus a split layer of 500 units reading 300 parents)
   against the dense MLP 784-H-10 of equal ``params``, before and after pruning the eps edges and
   compaction; other kernels are swapped in by replacing ``contribution`` on the benchmark's own
   copies of a connection (no library file is changed), and the library's sparse storage
   (``graph.sparse``) is chosen at two cut-overs, each checked against the library's masked dense
   output and gradients first.
4. ``torch.compile`` of the GrowableNet MLP 784-512-512-10: does it work, compile time, step gain.
5. Conv training step: ``GrowableNet.cnn((3, 32, 32), [16, 32, 64], [], 10)`` (VGG-like: three blocks
   of conv 3x3, batch norm, ReLU, max pool 2, then Linear 1024-10) against its ``export()`` (an
   ``nn.Sequential`` with equal weights; outputs checked first), batch 128, for ``--conv-seeds`` seeds;
   then a net grown from 4-8-16 to 16-32-64 by ``ops.add_channels`` (with Adam) against its export.
   ``--conv`` runs only this part; ``--skip-conv`` leaves it out.

Compared systems run interleaved: blocks of steps alternate between them (order reversed every
block) after a warm-up, and the median over blocks is reported, so background load falls on all
alike. The machine's load average is recorded before and after.

Usage::

    PYTHONPATH=src python benchmarks/bench_graph.py [--quick] [--repeats N] [--seed S] [--out FILE]
        [--threads N] [--skip-compile] [--conv | --skip-conv] [--conv-seeds K]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

try:
    from selfexpand import ops
    from selfexpand.graph import GrowableNet
except ImportError:  # run from a checkout without PYTHONPATH=src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from selfexpand import ops
    from selfexpand.graph import GrowableNet

BATCH = 128
LR = 1e-3
SPARSE_DENSITY = 0.05  # "very sparse": live fraction of stored entries below this (see the kernel table)
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


# ---------------------------------------------------------------------------- helpers
def make_step(model: nn.Module, params=None):
    """A closure doing one training step (forward, cross-entropy, backward, Adam step)."""
    optimizer = torch.optim.Adam(model.parameters() if params is None else params, lr=LR)

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step, optimizer


def sequential_twin(net: GrowableNet) -> nn.Sequential:
    """``nn.Sequential`` of ``nn.Linear`` / ``nn.ReLU`` with the same weights as the chain ``net``."""
    modules: list[nn.Module] = []
    for name in net.order[1:]:
        (conn,) = net.incoming(name)
        linear = nn.Linear(conn.shape[1], conn.shape[0])
        with torch.no_grad():
            linear.weight.copy_(conn.weight)
            linear.bias.copy_(net.layers[name].bias)
        modules += [linear] if name == net.output_name else [linear, nn.ReLU()]
    return nn.Sequential(*modules)


def dense_mlp(widths, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    modules: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        modules += [nn.Linear(a, b)] if i == len(widths) - 2 else [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*modules)


def random_batches(n: int, seed: int, n_in: int = 784, n_out: int = 10):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(BATCH, n_in, generator=gen), torch.randint(0, n_out, (BATCH,), generator=gen))
            for _ in range(n)]


def interleave(steps: dict, batches, *, blocks: int, warmup: int, block_seconds: float,
               max_per_block: int = 50, min_per_block: int = 3) -> dict[str, dict]:
    """Seconds per step of each system, timed in blocks that alternate between the systems.

    After ``warmup`` steps each, one block length (in steps, the same for every system) is chosen
    so that an average block lasts about ``block_seconds`` (within ``[min_per_block,
    max_per_block]``); then ``blocks`` rounds run, the order reversed every round.

    Returns:
        ``{name: {"median": s, "min": s, "per_block": steps}}`` over the blocks.
    """
    names = list(steps)
    probe = 0.0
    for name in names:
        for i in range(warmup):
            steps[name](*batches[i % len(batches)])
        start = time.perf_counter()
        for i in range(3):
            steps[name](*batches[i % len(batches)])
        probe += (time.perf_counter() - start) / 3 / len(names)
    k = int(min(max_per_block, max(min_per_block, round(block_seconds / max(probe, 1e-6)))))
    times = {name: [] for name in names}
    for b in range(blocks):
        for name in (names if b % 2 == 0 else names[::-1]):
            step = steps[name]
            start = time.perf_counter()
            for i in range(k):
                step(*batches[(b * k + i) % len(batches)])
            times[name].append((time.perf_counter() - start) / k)
    return {name: {"median": statistics.median(v), "min": min(v), "per_block": k, "blocks_s": v}
            for name, v in times.items()}


def interleaved_epochs(steps: dict, data_x, data_y, perms, *, chunk: int, warmup: int,
                       budget_seconds: float) -> dict:
    """Seconds per epoch of each system (median over the epochs, one per permutation in ``perms``).

    Every epoch (a permutation of the data in batches of 128) is cut into chunks of ``chunk``
    steps and the systems take turns chunk by chunk (order reversed every chunk), so every system's
    epoch spans the same stretch of wall time; an epoch's time is the sum of its chunks. If the
    epochs would not fit in ``budget_seconds`` (estimated after the warm-up: a loaded machine can be
    many times slower than a quiet one), only the first part of each epoch (at least 50 steps) is
    timed and scaled to the whole epoch; the result says so.
    """
    names = list(steps)
    starts = list(range(0, data_x.shape[0], BATCH))
    probe = 0.0
    for name in names:
        for i in range(warmup + 10):
            idx = perms[0][starts[i % len(starts)]:][:BATCH]
            begin = time.perf_counter()
            steps[name](data_x[idx], data_y[idx])
            probe += (time.perf_counter() - begin) / 10 if i >= warmup else 0.0
    timed = len(starts)
    if probe * timed * len(perms) > budget_seconds:
        timed = min(timed, max(50, int(budget_seconds / (probe * len(perms)))))
    totals = {name: [] for name in names}
    for perm in perms:
        spent = dict.fromkeys(names, 0.0)
        for c, first in enumerate(range(0, timed, chunk)):
            for name in (names if c % 2 == 0 else names[::-1]):
                step = steps[name]
                begin = time.perf_counter()
                for s in starts[first:min(first + chunk, timed)]:
                    idx = perm[s:s + BATCH]
                    step(data_x[idx], data_y[idx])
                spent[name] += time.perf_counter() - begin
        for name in names:
            totals[name].append(spent[name] * len(starts) / timed)
    return {"seconds": {name: statistics.median(v) for name, v in totals.items()},
            "steps_timed": timed, "steps_per_epoch": len(starts)}


# ---------------------------------------------------------------------------- 1. MLP step
def bench_mlp_step(widths, args) -> dict:
    net = GrowableNet.mlp(widths, seed=args.seed)
    twin = sequential_twin(net)
    x = random_batches(1, args.seed)[0][0]
    with torch.no_grad():
        same = float((net(x) - twin(x)).abs().max())
    steps = {"growable": make_step(net)[0], "sequential": make_step(twin)[0]}
    t = interleave(steps, random_batches(16, args.seed + 1), blocks=args.blocks, warmup=args.warmup,
                   block_seconds=args.block_seconds)
    g, q = t["growable"], t["sequential"]
    return {"widths": widths, "growable_ms": g["median"] * 1e3, "sequential_ms": q["median"] * 1e3,
            "ratio": g["median"] / q["median"], "ratio_of_min_blocks": g["min"] / q["min"],
            "steps_per_block": g["per_block"], "blocks": args.blocks, "max_abs_output_diff": same}


# ---------------------------------------------------------------------------- 2. add_units
def bench_add_units(args) -> dict:
    batches = random_batches(3, args.seed)
    times, event_seconds = [], []
    for r in range(args.add_repeats + 2):  # the first two are warm-up
        net = GrowableNet.mlp([784, 512, 10], seed=args.seed + r)  # rebuilt outside the timed region
        step, optimizer = make_step(net)
        for x, y in batches:
            step(x, y)
        gen = torch.Generator().manual_seed(args.seed + r)
        incoming = {"input_to_h1": torch.randn(64, 784, generator=gen) / math.sqrt(784)}
        outgoing = {"h1_to_output": torch.zeros(10, 64)}
        with torch.no_grad():
            before = net(batches[0][0])
        start = time.perf_counter()
        event = ops.add_units(net, "h1", 64, incoming=incoming, outgoing=outgoing, optimizer=optimizer)
        elapsed = time.perf_counter() - start
        with torch.no_grad():
            diff = float((net(batches[0][0]) - before).abs().max())
        shape = tuple(optimizer.state[net.connections["input_to_h1"].weight]["exp_avg"].shape)
        if diff > 1e-5 or shape != (576, 784):
            raise RuntimeError(f"add_units check failed: output moved by {diff}, exp_avg shape {shape}")
        step(*batches[0])  # the optimizer works on the grown net
        if r >= 2:
            times.append(elapsed)
            event_seconds.append(event.seconds)
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3,
            "p90_ms": statistics.quantiles(times, n=10)[-1] * 1e3,
            "event_seconds_median_ms": statistics.median(event_seconds) * 1e3, "repeats": len(times)}


# ---------------------------------------------------------------------------- 3. edge expansion
def expanded_net(seed: int) -> GrowableNet:
    """784 -> 10 with 500 edges of ``input_to_output`` split (300 distinct parents, eps 1e-8).

    Parent ``j`` (of 300 inputs drawn at random) feeds output ``j % 10``; the first 200 parents also
    feed output ``(j + 5) % 10``: 500 distinct edges spread over all 10 outputs.
    """
    gen = torch.Generator().manual_seed(seed)
    net = GrowableNet.mlp([784, 10], seed=seed)
    parents = torch.randperm(784, generator=gen)[:300]
    cols = torch.cat([parents, parents[:200]])
    rows = torch.cat([torch.arange(300) % 10, (torch.arange(200) + 5) % 10])
    ops.split_edges(net, {"input_to_output": (rows, cols)}, eps=1e-8, generator=gen)
    return net


def pruned(net: GrowableNet) -> GrowableNet:
    """A copy with every provisional (eps) edge pruned, then compacted."""
    net = copy.deepcopy(net)
    ops.prune_edges(net, {name: tuple(torch.nonzero(c.provisional, as_tuple=True))
                          for name, c in net.connections.items()
                          if c.provisional is not None and bool(c.provisional.any())})
    ops.compact(net)
    return net


def equal_dense_width(params: int, n_in: int = 784, n_out: int = 10) -> int:
    """H minimising ``|(n_in + 1) H + (H + 1) n_out - params|``."""
    per_unit = n_in + 1 + n_out
    h = max(1, round((params - n_out) / per_unit))
    return max(1, min((h - 1, h, h + 1), key=lambda k: (abs(per_unit * k + n_out - params), k)))


def density(conn) -> float:
    return 1.0 if conn.mask is None else float(conn.mask.mean())


def _live_coordinates(conn):
    return torch.nonzero(conn.live(), as_tuple=True)  # row-major, as CSR needs


class _MaskInBackward(torch.autograd.Function):
    """``F.linear(x, W)`` forward, the gradient of ``W`` masked in place in backward.

    Skips the forward ``W * M`` product and its backward node (a ``W``-sized allocation each way,
    each step); correct because the library stores masked entries of ``W`` as 0.
    """

    @staticmethod
    def forward(ctx, x, weight, mask):
        ctx.save_for_backward(x, weight, mask)
        return F.linear(x, weight)

    @staticmethod
    def backward(ctx, grad):
        x, weight, mask = ctx.saved_tensors
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        grad_w = (grad.t() @ x).mul_(mask) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None


def kernel_mask_in_backward(conn) -> None:
    def contribution(self, x):
        if self.in_index is not None:
            x = x.index_select(1, self.in_index)
        return F.linear(x, self.weight) if self.mask is None else _MaskInBackward.apply(x, self.weight, self.mask)

    conn.contribution = types.MethodType(contribution, conn)


def torch_sparse_kernel(layout):
    """``torch.sparse.mm`` with a COO or CSR matrix of the live entries of ``W``, built every step."""

    def kernel(conn) -> None:
        rows, cols = _live_coordinates(conn)
        crow = torch.cat([torch.zeros(1, dtype=torch.long),
                          torch.bincount(rows, minlength=conn.shape[0]).cumsum(0)])

        def contribution(self, x):
            if self.in_index is not None:
                x = x.index_select(1, self.in_index)
            values = self.weight[rows, cols]
            if layout == "coo":
                matrix = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, self.shape,
                                                 is_coalesced=True, check_invariants=False)
            else:
                matrix = torch.sparse_csr_tensor(crow, cols, values, self.shape, check_invariants=False)
            return torch.sparse.mm(matrix, x.t()).t()

        conn.contribution = types.MethodType(contribution, conn)

    return kernel


def kernel_edge_list(conn) -> None:
    """Gather, multiply, scatter over the live edges (``y[:, r] += x[:, c] W[r, c]``): O(batch x edges).

    Works on transposed activations so that ``index_select`` / ``index_add_`` move whole rows.
    """
    rows, cols = _live_coordinates(conn)
    read = cols if conn.in_index is None else conn.in_index[cols]

    def contribution(self, x):
        values = x.t().index_select(0, read) * self.weight[rows, cols].unsqueeze(1)
        return x.new_zeros(self.shape[0], x.shape[0]).index_add_(0, rows, values).t()

    conn.contribution = types.MethodType(contribution, conn)


def variant(net: GrowableNet, *pairs) -> GrowableNet:
    """A copy of ``net``; for each ``(kernel, which)`` pair, connections ``which(net)`` get ``kernel``."""
    net = copy.deepcopy(net)
    for kernel, which in zip(pairs[::2], pairs[1::2]):
        for name in which(net):
            kernel(net.connections[name])
    net.invalidate()
    return net


def automatic_storage(net: GrowableNet, sparse_below: float) -> GrowableNet:
    """A copy of ``net`` whose storage the library chose at ``sparse_below`` (``graph.sparse``)."""
    net = copy.deepcopy(net)
    net.sparse_below = sparse_below
    ops.choose_storage(net)
    return net


def very_sparse(net):
    return [n for n, c in net.connections.items() if density(c) < SPARSE_DENSITY]


def masked_not_sparse(net):
    return [n for n, c in net.connections.items() if c.mask is not None and density(c) >= SPARSE_DENSITY]


KERNELS = {"masked dense (as is)": None, "dense, mask in backward only": kernel_mask_in_backward,
           "torch.sparse COO": torch_sparse_kernel("coo"), "torch.sparse CSR": torch_sparse_kernel("csr"),
           "edge list (gather, index_add)": kernel_edge_list}


def bench_kernels(nets: dict, args) -> dict:
    """Forward + backward of one masked connection's contribution alone, for every kernel."""
    out = {}
    gen = torch.Generator().manual_seed(args.seed + 11)
    for label, net in nets.items():
        for name, conn in net.connections.items():
            if conn.mask is None:
                continue  # every stored entry live: plain dense F.linear, nothing to choose
            x = torch.rand(BATCH, net.layers[conn.source].size, generator=gen)
            x.requires_grad_(conn.source != net.input_name)
            calls = {}
            for kernel_name, kernel in KERNELS.items():
                if kernel not in (None, kernel_mask_in_backward) and int(conn.live().sum()) > 50_000:
                    continue  # a sparse kernel over a dense-sized edge list: far too slow, skipped
                c = copy.deepcopy(conn)
                if kernel is not None:
                    kernel(c)

                def call(_x, _y, c=c):
                    c.weight.grad = None
                    c.contribution(x).sum().backward()
                calls[kernel_name] = call
            t = interleave(calls, [(None, None)], blocks=args.kernel_blocks, warmup=args.warmup,
                           block_seconds=args.block_seconds / 5, max_per_block=100, min_per_block=2)
            med = {k: v["median"] for k, v in t.items()}
            base = med["masked dense (as is)"]
            out[f"{label}/{name}"] = {
                "shape": list(conn.shape), "live": int(conn.live().sum()), "density": round(density(conn), 4),
                "us": {k: v * 1e6 for k, v in med.items()}, "ratio": {k: v / base for k, v in med.items()},
                "ratio_of_min_blocks": {k: v["min"] / t["masked dense (as is)"]["min"] for k, v in t.items()},
                "fastest": min(med, key=med.get)}
    return out


def check_same(model, ref, x, y) -> dict:
    """Largest output and gradient differences of ``model`` against ``ref`` (a kernel variant of it)."""
    for m in (model, ref):
        m.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
    with torch.no_grad():
        out = float((model(x) - ref(x)).abs().max())
    ref_params, grad = dict(ref.named_parameters()), 0.0
    for name, param in model.named_parameters():
        conn = model.connections[name.split(".")[1]] if name.startswith("connections.") else None
        if conn is not None and conn.sparse:  # the library's sparse storage: compare with the live entries
            expected = ref_params[name].grad[conn.edge_index[0], conn.edge_index[1]]
        else:
            expected = ref_params[name].grad
        grad = max(grad, float((param.grad - expected).abs().max()))
    if out > 1e-5 or grad > 1e-5:
        raise RuntimeError(f"a kernel variant disagrees with the library: output {out}, grad {grad}")
    return {"output": out, "grad": grad}


def bench_edge_expansion(args) -> dict:
    base = expanded_net(args.seed)
    after = automatic_storage(pruned(base), 0.0)  # masked dense, as before the sparse kind: the reference
    params, params_after = base.counts()["params"], after.counts()["params"]
    h, h_after = equal_dense_width(params), equal_dense_width(params_after)
    dense, dense_after = f"dense 784-{h}-10", f"dense 784-{h_after}-10"
    direct = lambda net: ["input_to_output"]  # noqa: E731
    systems = {
        dense: dense_mlp([784, h, 10], args.seed),
        "expanded: masked dense (as is)": copy.deepcopy(base),
        "expanded: direct dense, mask in backward only": variant(base, kernel_mask_in_backward, direct),
        "pruned: masked dense (as is)": copy.deepcopy(after),
        "pruned: edge list where density < 5%": variant(after, kernel_edge_list, very_sparse),
        "pruned: edge list where density < 5%, mask in backward elsewhere": variant(
            after, kernel_edge_list, very_sparse, kernel_mask_in_backward, masked_not_sparse),
        "pruned: the library's storage choice (sparse below 3 %, the default)": automatic_storage(after, 0.03),
        "pruned: the library's sparse storage below 5 %": automatic_storage(after, SPARSE_DENSITY),
        dense_after: dense_mlp([784, h_after, 10], args.seed),
    }
    x, y = random_batches(1, args.seed + 7)[0]
    checks = {name: check_same(model, systems[f"{name.split(':')[0]}: masked dense (as is)"], x, y)
              for name, model in systems.items() if ":" in name and "(as is)" not in name}

    mlp = GrowableNet.mlp([784, 512, 10], seed=args.seed)
    first = mlp.connections["input_to_h1"]
    first.mask = torch.ones_like(first.weight.detach())  # an all-ones mask (compaction drops these)
    kernels = bench_kernels({"expanded": base, "pruned": after, "mlp 784-512-10 with an all-ones mask": mlp}, args)

    gen = torch.Generator().manual_seed(args.seed)
    data_x = torch.rand(args.epoch_samples, 784, generator=gen)
    data_y = torch.randint(0, 10, (args.epoch_samples,), generator=gen)
    perms = [torch.randperm(args.epoch_samples, generator=gen) for _ in range(args.rounds)]
    steps = {name: make_step(model)[0] for name, model in systems.items()}
    timing = interleaved_epochs(steps, data_x, data_y, perms, chunk=args.chunk, warmup=args.warmup,
                                budget_seconds=args.epoch_budget)
    med = timing["seconds"]
    return {
        "params_expanded": params, "params_pruned": params_after,
        "stored_expanded": base.counts()["stored_params"], "stored_pruned": after.counts()["stored_params"],
        "dense": dense, "dense_params": 795 * h + 10, "dense_pruned": dense_after,
        "dense_params_pruned": 795 * h_after + 10,
        "steps_per_epoch": timing["steps_per_epoch"], "steps_timed_per_epoch": timing["steps_timed"],
        "epochs_per_system": args.rounds, "chunk": args.chunk, "epoch_seconds": med,
        "ratio_vs_dense": {name: s / med[dense] for name, s in med.items()},
        "ratio_vs_dense_pruned_params": {name: s / med[dense_after] for name, s in med.items()},
        "kernel_checks": checks, "kernels": kernels,
        "structure": {label: {name: {"shape": list(c.shape), "live": int(c.live().sum()),
                                     "in_index": c.in_index is not None, "masked": c.mask is not None}
                              for name, c in net.connections.items()}
                      for label, net in (("expanded", base), ("pruned", after))},
    }


# ---------------------------------------------------------------------------- 4. torch.compile
def _graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def bench_compile(args) -> dict:
    widths = [784, 512, 512, 10]
    result: dict = {"widths": widths, "cache": "as found" if args.quick else "cold"}
    cache = None
    if not args.quick:  # a cold compile: a fresh inductor cache directory, removed afterwards
        cache = tempfile.mkdtemp(prefix="bench_graph_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    try:
        eager, net = GrowableNet.mlp(widths, seed=args.seed), GrowableNet.mlp(widths, seed=args.seed)
        compiled = torch.compile(net)
        step_c, step_e = make_step(compiled, net.parameters())[0], make_step(eager)[0]
        batches = random_batches(16, args.seed + 3)
        graphs = _graphs_compiled()
        start = time.perf_counter()
        step_c(*batches[0])
        result["compile_first_step_s"] = time.perf_counter() - start
        start = time.perf_counter()
        step_c(*batches[1])  # compiles again if a guard of the first graph fails
        result["second_step_s"] = time.perf_counter() - start
        result["graphs_compiled_first_two_steps"] = _graphs_compiled() - graphs
        with torch.no_grad():
            result["max_abs_output_diff"] = float((compiled(batches[2][0]) - net(batches[2][0])).abs().max())
        t = interleave({"eager": step_e, "compiled": step_c}, batches, blocks=args.blocks,
                       warmup=args.warmup, block_seconds=args.block_seconds)
        result.update(ok=True, eager_ms=t["eager"]["median"] * 1e3, compiled_ms=t["compiled"]["median"] * 1e3,
                      ratio=t["compiled"]["median"] / t["eager"]["median"],
                      ratio_of_min_blocks=t["compiled"]["min"] / t["eager"]["min"])
        if not args.quick:  # growth changes parameter shapes: what do the next steps cost?
            ops.add_units(net, "h1", 64, incoming={"input_to_h1": torch.zeros(64, 784)},
                          outgoing={"h1_to_h2": torch.zeros(512, 64)})
            for key in ("step_after_add_units_s", "second_step_after_add_units_s"):
                start = time.perf_counter()
                F.cross_entropy(compiled(batches[0][0]), batches[0][1]).backward()
                result[key] = time.perf_counter() - start
        # Again from scratch, the forward plan built before compiling (one eager forward): how many graphs?
        torch._dynamo.reset()
        prebuilt = GrowableNet.mlp(widths, seed=args.seed + 1)
        prebuilt(batches[0][0])
        step_p, graphs = make_step(torch.compile(prebuilt), prebuilt.parameters())[0], _graphs_compiled()
        step_p(*batches[0])
        step_p(*batches[1])
        result["graphs_compiled_first_two_steps_plan_prebuilt"] = _graphs_compiled() - graphs
    except Exception as exc:  # noqa: BLE001 - the report states what failed
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:2000])
    finally:
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
    return result


# ---------------------------------------------------------------------------- 5. conv step
CONV_INPUT = (3, 32, 32)
CONV_WIDTHS = [16, 32, 64]
CONV_GROWN_FROM = [4, 8, 16]


def image_batches(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(BATCH, *CONV_INPUT, generator=gen), torch.randint(0, 10, (BATCH,), generator=gen))
            for _ in range(n)]


def grown_cnn(seed: int) -> GrowableNet:
    """``GrowableNet.cnn`` 4-8-16 grown to 16-32-64 by ``ops.add_channels`` (three rounds of +4, +8,
    +16 on h1, h2, h3), with an Adam optimizer (state carried) and one training step before and
    after each round: its weights and Adam state have the grown layout."""
    net = GrowableNet.cnn(CONV_INPUT, CONV_GROWN_FROM, [], 10, seed=seed)
    step, optimizer = make_step(net)
    batches = image_batches(2, seed + 100)
    gen = torch.Generator().manual_seed(seed + 200)
    step(*batches[0])
    for _ in range(3):
        for name, n in zip(("h1", "h2", "h3"), CONV_GROWN_FROM):
            ops.add_channels(net, name, n, optimizer=optimizer, generator=gen)
        step(*batches[1])
    if [net.layers[n].size for n in ("h1", "h2", "h3")] != CONV_WIDTHS:
        raise RuntimeError(f"grown net has widths {net.widths()}")
    return net


def bench_conv_one(net: GrowableNet, label: str, seed: int, args) -> dict:
    """Training step of ``net`` against ``net.export()`` (same weights), interleaved."""
    twin = net.export()
    x = image_batches(1, seed + 1)[0][0]
    net.train(), twin.train()
    with torch.no_grad():  # training mode (batch statistics) and evaluation mode (running statistics)
        probe = copy.deepcopy(net), copy.deepcopy(twin)
        diff_train = float((probe[0](x) - probe[1](x)).abs().max())
        diff_eval = float((probe[0].eval()(x) - probe[1].eval()(x)).abs().max())
    if diff_train > 1e-5 or diff_eval > 1e-5:
        raise RuntimeError(f"{label}: export disagrees (train {diff_train}, eval {diff_eval})")
    steps = {"growable": make_step(net)[0], "sequential": make_step(twin)[0]}
    # short blocks (2-3 steps), many of them: the two systems alternate every ~0.2 s, so a burst of
    # background load falls on both alike
    t = interleave(steps, image_batches(8, seed + 2), blocks=args.conv_blocks, warmup=args.conv_warmup,
                   block_seconds=args.block_seconds / 4, min_per_block=2)
    g, q = t["growable"], t["sequential"]
    paired = [a / b for a, b in zip(g["blocks_s"], q["blocks_s"])]  # block b of each: adjacent in time
    return {"net": label, "seed": seed, "growable_ms": g["median"] * 1e3, "sequential_ms": q["median"] * 1e3,
            "ratio": g["median"] / q["median"], "ratio_of_min_blocks": g["min"] / q["min"],
            "median_paired_ratio": statistics.median(paired),
            "steps_per_block": g["per_block"], "blocks": args.conv_blocks,
            "max_abs_output_diff_train": diff_train, "max_abs_output_diff_eval": diff_eval}


def bench_conv_step(args) -> dict:
    """VGG-like 3-block conv net on CIFAR-sized input (batch 128): GrowableNet.cnn against its export,
    for ``args.conv_seeds`` seeds, then a grown net (4-8-16 -> 16-32-64) against its export."""
    rows = []
    for seed in range(args.seed, args.seed + args.conv_seeds):
        net = GrowableNet.cnn(CONV_INPUT, CONV_WIDTHS, [], 10, seed=seed)
        rows.append(bench_conv_one(net, "cnn 16-32-64", seed, args))
        print(f"  conv seed {seed}: ratio {rows[-1]['ratio']:.3f} (load {_load()})", file=sys.stderr, flush=True)
    rows.append(bench_conv_one(grown_cnn(args.seed), "grown 4-8-16 -> 16-32-64", args.seed, args))
    ratios = [r["ratio"] for r in rows[:args.conv_seeds]]
    return {"input_shape": list(CONV_INPUT), "rows": rows, "median_ratio_fresh": statistics.median(ratios),
            "max_ratio_fresh": max(ratios)}


def conv_table(c: dict) -> str:
    rows = [("| Net | Seed | GrowableNet ms | nn.Sequential ms | Ratio | Median paired-block ratio | "
             "Ratio of min blocks | Target | Pass |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in c["rows"]:
        rows.append(f"| {r['net']} | {r['seed']} | {r['growable_ms']:.2f} | {r['sequential_ms']:.2f} | "
                    f"{r['ratio']:.3f} | {r['median_paired_ratio']:.3f} | {r['ratio_of_min_blocks']:.3f} | "
                    f"<= 1.10 | {_ok(r['ratio'] <= 1.10)} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------- report
def _ok(flag: bool) -> str:
    return "pass" if flag else "FAIL"


def tables(results: dict) -> str:
    """The Markdown report: targets, epoch times of the kernel options, kernels alone."""
    rows = ["| Measurement | Result | Target | Pass |", "|---|---|---|---|"]
    for r in results["mlp_step"]:
        rows.append(f"| Train step {'-'.join(map(str, r['widths']))}: GrowableNet / nn.Sequential (median "
                    f"{r['growable_ms']:.2f} / {r['sequential_ms']:.2f} ms) | {r['ratio']:.3f} | <= 1.10 | "
                    f"{_ok(r['ratio'] <= 1.10)} |")
    a = results["add_units"]
    rows.append(f"| add_units: 64 units into 784-512-10, Adam state carried (median of {a['repeats']}; min "
                f"{a['min_ms']:.2f}, p90 {a['p90_ms']:.2f} ms) | {a['median_ms']:.2f} ms | < 10 ms | "
                f"{_ok(a['median_ms'] < 10)} |")
    e = results["edge_expansion"]
    sec, dense = e["epoch_seconds"], e["dense"]
    for label, name, params in (("expanded (eps edges kept)", "expanded: masked dense (as is)", e["params_expanded"]),
                                ("pruned + compacted", "pruned: masked dense (as is)", e["params_pruned"])):
        ratio = e["ratio_vs_dense"][name]
        rows.append(f"| Epoch ({e['steps_per_epoch']} steps), {label}, {params} params / {dense}, "
                    f"{e['dense_params']} params ({sec[name]:.2f} / {sec[dense]:.2f} s) | {ratio:.3f} | <= 1.5 | "
                    f"{_ok(ratio <= 1.5)} |")
    c = results["compile"]
    if c.get("ok"):
        rows.append(f"| torch.compile(GrowableNet 784-512-512-10) step / eager step (median {c['compiled_ms']:.2f} / "
                    f"{c['eager_ms']:.2f} ms; compile {c['compile_first_step_s']:.1f} s, {c['cache']} cache) | "
                    f"{c['ratio']:.3f} | works | pass |")
    else:
        rows.append(f"| torch.compile(GrowableNet 784-512-512-10) | {c.get('error', '?')[:300]} | works | FAIL |")
    scaled = "" if e["steps_timed_per_epoch"] == e["steps_per_epoch"] else \
        f"; the first {e['steps_timed_per_epoch']} steps of each epoch timed, scaled to {e['steps_per_epoch']}"
    rows += ["", f"Epoch time of each kernel option ({e['epochs_per_system']} epochs of {e['steps_per_epoch']} "
                 f"steps each, interleaved in chunks of {e['chunk']} steps; median{scaled}):", "",
             f"| System | Epoch s | / {dense} | / {e['dense_pruned']} |", "|---|---|---|---|"]
    rows += [f"| {name} | {t:.3f} | {e['ratio_vs_dense'][name]:.3f} | {e['ratio_vs_dense_pruned_params'][name]:.3f} |"
             for name, t in sec.items()]
    names = list(KERNELS)
    rows += ["", "One masked connection alone (forward + backward, batch 128; median us, ratio to masked dense):",
             "", "| Connection | Shape, live, density | " + " | ".join(names) + " | Fastest |",
             "|---|---|" + "---|" * (len(names) + 1)]
    for conn, k in e["kernels"].items():
        cells = [f"{k['us'][n]:.0f} ({k['ratio'][n]:.2f})" if n in k["us"] else "-" for n in names]
        rows.append(f"| {conn} | {k['shape'][0]}x{k['shape'][1]}, {k['live']}, {k['density']:.4f} | "
                    + " | ".join(cells) + f" | {k['fastest']} |")
    if "conv_step" in results and isinstance(results["conv_step"], dict) and "rows" in results["conv_step"]:
        rows += ["", ("Conv training step (3x32x32, conv 16-32-64 with batch norm, ReLU, max pool, then "
                      "Linear 1024-10; batch 128; median of the interleaved blocks):"), "",
                 conv_table(results["conv_step"])]
    return "\n".join(rows)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None,
                        help="blocks per interleaved step comparison (default 20, 6 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="fewer blocks, 20-step epochs: a smoke test (seconds)")
    parser.add_argument("--out", type=Path, default=None, help="write every result as JSON here")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N) (default: torch's)")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile measurement")
    parser.add_argument("--conv", action="store_true",
                        help="run only the conv training-step measurement (section 5)")
    parser.add_argument("--skip-conv", action="store_true", help="leave out the conv training-step measurement")
    parser.add_argument("--conv-seeds", type=int, default=3, help="seeds of the conv step measurement (default 3)")
    args = parser.parse_args(argv)
    if args.conv and args.skip_conv:
        parser.error("--conv and --skip-conv exclude each other")
    for name in ("repeats", "threads", "conv_seeds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got --{name}={getattr(args, name)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    quick = args.quick
    args.blocks = args.repeats or (6 if quick else 20)
    args.block_seconds, args.warmup = (0.05, 3) if quick else (0.5, 20)
    args.conv_warmup, args.conv_blocks = (3, args.repeats or 10) if quick else (10, 3 * (args.repeats or 20))
    args.add_repeats, args.kernel_blocks = (10, 4) if quick else (30, 10)
    args.rounds, args.chunk = 2, (10 if quick else 25)
    args.epoch_samples, args.epoch_budget = (20 * BATCH, 8.0) if quick else (60000, 150.0)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    results: dict = {
        "command": " ".join(["PYTHONPATH=src python benchmarks/bench_graph.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "load_average_before": _load(),
        "machine": {"torch": torch.__version__, "python": platform.python_version(), "cpu": _cpu_name(),
                    "cpu_count": os.cpu_count(), "threads": torch.get_num_threads()},
    }
    parts = (("mlp_step", lambda: [bench_mlp_step(w, args) for w in ([784, 100, 10], [784, 512, 512, 10])]),
             ("add_units", lambda: bench_add_units(args)), ("edge_expansion", lambda: bench_edge_expansion(args)),
             ("compile", lambda: {"ok": False, "error": "skipped (--skip-compile)"} if args.skip_compile
              else bench_compile(args)),
             ("conv_step", lambda: {"skipped": True} if args.skip_conv else bench_conv_step(args)))
    if args.conv:
        parts = parts[-1:]
    for key, run in parts:
        results[key] = run()
        print(f"{key} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    results["wall_seconds"] = time.perf_counter() - started
    results["load_average_after"] = _load()
    results["table"] = conv_table(results["conv_step"]) if args.conv else tables(results)
    print(results["table"])
    print(f"\n{results['command']}  (wall {results['wall_seconds']:.0f} s, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {results['load_average_before']} before, "
          f"{results['load_average_after']} after)")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
