"""The committed grown network (``tests/fixtures/edge_mnist_s0.safetensors``): the MNIST edge preset's final
network of seed 0 (``selfexpand train --method edge --dataset mnist --seed 0 --threads 1``, 2026-12-07;
test 0.9752), so that tests and ``benchmarks/bench_grown.py`` need not train it."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from selfexpand.graph import GrowableNet

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "edge_mnist_s0.safetensors"


def _by_hand(net: GrowableNet) -> dict:
    """``params`` and ``stored_params`` counted entry by entry (no modulators or batch norm here)."""
    live = sum(int(c.live().sum()) for c in net.connections.values())
    stored = sum(c.weight.numel() for c in net.connections.values())
    biases = sum(net.layers[n].size for n in net.order[1:])
    return {"params": live + biases, "stored_params": stored + biases}


def test_the_fixture_is_the_grown_network_it_claims():
    net = GrowableNet.load(FIXTURE)
    counts = net.counts()
    assert counts["params"] == 59_998 and counts["stored_params"] == 74_825
    assert {k: counts[k] for k in ("params", "stored_params")} == _by_hand(net)
    assert len(net.connections) == 37 and net.widths()[0] == 784 and net.widths()[-1] == 10
    assert sum(net.widths()[1:-1]) == 660 and not net.is_chain()
    for conn in net.connections.values():  # masked entries are stored as 0
        if conn.mask is not None:
            assert bool((conn.weight[conn.mask == 0] == 0).all())


def test_the_fixture_trains_and_exports_alike():
    """Outputs and gradients of the graph equal those of its plain export (float64)."""
    net = GrowableNet.load(FIXTURE).double()
    plain = net.export().double()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 784, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=gen)
    out, ref = net(x), plain(x)
    assert float((out - ref).abs().max()) < 1e-10
    F.cross_entropy(out, y).backward()
    grads = [c.weight.grad for c in net.connections.values()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    for conn in net.connections.values():  # no gradient reaches a masked entry
        if conn.mask is not None:
            assert bool((conn.weight.grad[conn.mask == 0] == 0).all())
