"""``net.export()``: a plain ``nn.Module`` of the final size with the same outputs; masks multiplied in,
modulator factors folded in (a unit with factor 0 dropped); ``nn.Sequential`` for a chain, else an
``ExportedGraph`` (a ``torch.fx.GraphModule``). Loading without selfexpand, TorchScript, torch.export and
ONNX are checked in ``test_export_plain.py``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfexpand import ops
from selfexpand.errors import ConfigError
from selfexpand.graph import ExportedGraph, GateModulator, GrowableNet, UnitModulator

TOL = dict(rtol=1e-5, atol=1e-5)


def _x(n_in, signed=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(32, n_in, generator=gen) if signed else torch.rand(32, n_in, generator=gen)


def _gate(net, layer, values):
    mod = GateModulator(len(values))
    with torch.no_grad():
        mod.gate.copy_(torch.tensor(values))
    net.layers[layer].modulator = mod
    net.invalidate()
    return net


def assert_plain(exported):
    """No masks, no modulators, no gates: only dense weights, biases, activations, index buffers."""
    assert not any("mask" in name or "provisional" in name for name, _ in exported.named_buffers())
    assert not any(isinstance(m, (UnitModulator, GrowableNet)) for m in exported.modules())
    assert not any("gate" in name for name, _ in exported.named_parameters())


def chain():
    return GrowableNet.mlp([3, 5, 4, 2], seed=0)


def split_graph():
    net = GrowableNet.mlp([4, 6, 3], seed=1)
    ops.split_edges(net, [("h1_to_output", 0, 2), ("h1_to_output", 2, 5)], eps=1e-3,
                    generator=torch.Generator().manual_seed(0))
    return net


def pruned_compacted():
    net = GrowableNet.mlp([4, 6, 3], seed=2)
    ops.prune_edges(net, [("h1_to_output", r, 1) for r in range(3)] + [("input_to_h1", 0, 0)])
    ops.compact(net)
    return net


def identity_signed():
    net = GrowableNet.mlp([4, 3, 2], seed=3)
    ops.insert_identity_layer(net, "input_to_h1", signed=True)
    return net


def gated_chain_with_dead_unit():
    return _gate(GrowableNet.mlp([3, 4, 2], seed=4), "h1", [0.5, -1.0, 0.0, -0.25])


def gated_split_with_dead_units():
    net = split_graph()
    return _gate(net, "h1", [0.2, -1.0, 0.1, -1.0, 0.0, 0.3])


def gated_output():
    return _gate(GrowableNet.mlp([3, 4, 2], seed=5), "output", [-1.0, 0.5])


CASES = {
    # name: (builder, signed inputs, exported type, hidden widths of the export)
    "chain": (chain, True, nn.Sequential, [5, 4]),
    "split graph": (split_graph, False, ExportedGraph, [6, 2]),
    "pruned + compacted": (pruned_compacted, True, ExportedGraph, [5]),
    "signed identity layer": (identity_signed, True, nn.Sequential, [8, 3]),
    "gated chain, dead unit": (gated_chain_with_dead_unit, True, nn.Sequential, [3]),
    "gated split, dead units": (gated_split_with_dead_units, False, ExportedGraph, [4, 2]),
    "gated output layer": (gated_output, True, nn.Sequential, [4]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_export_reproduces_outputs(case):
    build, signed, kind, hidden = CASES[case]
    net = build()
    x = _x(net.layers["input"].size, signed)
    exported = net.export()
    assert isinstance(exported, kind)
    assert_plain(exported)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), **TOL)
    if kind is nn.Sequential:
        widths = [m.out_features for m in exported if isinstance(m, nn.Linear)]
        assert widths[:-1] == hidden
    else:
        assert not isinstance(exported, nn.Sequential)
        widths = exported.meta["widths"]
        assert [w for n, w in widths.items() if n not in ("input", "output") and w] == hidden


def test_exported_parameter_count_is_the_live_count():
    """With no masks, the export holds exactly ``params`` numbers (dead units dropped)."""
    net = gated_chain_with_dead_unit()
    exported = net.export()
    assert sum(p.numel() for p in exported.parameters()) == net.counts()["params"] == 20


def test_dead_unit_is_really_dropped():
    net = gated_chain_with_dead_unit()
    exported = net.export()
    first, second = [m for m in exported if isinstance(m, nn.Linear)]
    kept = [0, 2, 3]
    factor = torch.tensor([1.5, 0.0, 1.0, 0.75])
    torch.testing.assert_close(first.weight, net.connections["input_to_h1"].weight.detach()[kept])
    expected = net.connections["h1_to_output"].weight.detach() * factor
    torch.testing.assert_close(second.weight, expected[:, kept])


def test_masked_entries_are_zero_in_the_export():
    net = GrowableNet.mlp([3, 2], seed=0)
    with torch.no_grad():  # a masked entry whose stored value is not 0 must not leak into the export
        ops.prune_edges(net, [("input_to_output", 1, 2)])
        net.connections["input_to_output"].weight[1, 2] = 5.0
    exported = net.export()
    assert float(exported[1].weight.detach()[1, 2]) == 0.0
    x = _x(3, True)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), **TOL)


def test_export_is_independent_of_the_graph():
    net = split_graph()
    x = _x(4)
    exported = net.export()
    with torch.no_grad():
        before = exported(x).clone()
        for p in net.parameters():
            p.add_(1.0)
        torch.testing.assert_close(exported(x), before, rtol=0, atol=0)


@pytest.mark.parametrize("build", [chain, split_graph, gated_split_with_dead_units])
def test_export_keeps_dtype_and_training_mode(build):
    net = build().to(torch.float64).eval()
    x = _x(net.layers["input"].size).double()
    exported = net.export()
    assert not exported.training
    assert all(p.dtype == torch.float64 for p in exported.parameters())
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), rtol=1e-12, atol=1e-12)


def test_export_with_a_front():
    front = nn.Sequential(nn.Linear(6, 4), nn.ReLU())
    net = GrowableNet.mlp([4, 5, 2], seed=0, front=front)
    x = _x(6, True)
    exported = net.export()
    assert isinstance(exported, nn.Sequential)
    assert exported[0] is not front
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), **TOL)
    assert sum(p.numel() for p in exported.parameters()) == sum(p.numel() for p in net.parameters())


def test_export_gradients_flow_like_a_normal_module():
    exported = split_graph().export()
    exported(_x(4)).sum().backward()
    assert all(p.grad is not None for p in exported.parameters())


def test_modulated_output_with_nonidentity_activation_is_refused():
    net = _gate(GrowableNet.mlp([3, 2], seed=0), "output", [0.0, 0.0])
    net.layers["output"].activation = nn.Tanh()
    with pytest.raises(ConfigError, match="modulated output layer"):
        net.export()
