"""The committed grown network (``tests/fixtures/edge_mnist_s0.safetensors``): the MNIST edge preset's final
network of seed 0 (``selfexpand train --method edge --dataset mnist --seed 0 --threads 1``, 2026-12-07;
test 0.9752), so that tests and ``benchmarks/bench_grown.py`` need not train it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from selfexpand.graph import GrowableNet
from selfexpand.graph.sparse import SPARSE_BELOW
from selfexpand.ops.storage import choose_storage

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


def _outputs_and_gradients(net: GrowableNet, x, y) -> tuple[torch.Tensor, dict]:
    net.zero_grad(set_to_none=True)
    out = net(x)
    F.cross_entropy(out, y).backward()
    grads = {name: (c.scatter(c.weight.grad) if c.sparse else c.weight.grad * (1 if c.mask is None else c.mask))
             for name, c in net.connections.items()}
    grads.update({f"bias {n}": net.layers[n].bias.grad for n in net.order[1:]})
    return out.detach(), grads


@pytest.mark.parametrize("sparse_below", [SPARSE_BELOW, 0.5, 1.0])
def test_automatic_storage_computes_what_all_dense_storage_computes(sparse_below):
    """The automatic choice (at the default cut-over and at higher ones, where it stores many of the
    connections sparse) gives the all-dense network's outputs and gradients (float64, 1e-6), and stores
    sparse exactly the connections below the cut-over."""
    dense = GrowableNet.load(FIXTURE).double()
    chosen = GrowableNet.load(FIXTURE).double()
    chosen.sparse_below = sparse_below
    fractions = {name: float(c.live().float().mean()) for name, c in chosen.connections.items()}
    sparse = choose_storage(chosen)
    assert sorted(sparse) == sorted(n for n, f in fractions.items() if f < sparse_below)
    if sparse_below == SPARSE_BELOW:  # the measured cut-over stores none of this network sparse
        assert sparse == [] and min(fractions.values()) > SPARSE_BELOW
    else:
        assert len(sparse) >= (4 if sparse_below == 0.5 else 20)
    assert chosen.counts()["params"] == dense.counts()["params"] == 59_998
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(64, 784, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=gen)
    out, grads = _outputs_and_gradients(chosen, x, y)
    ref, ref_grads = _outputs_and_gradients(dense, x, y)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=0, atol=1e-6, msg=name)
