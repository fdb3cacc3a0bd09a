"""Inactivity analysis (DESIGN.md glossary: dead, silent, inactive, new units) on a constructed
network whose every unit's verdict is known, on new units made by add_units / split_edges /
insert_layer, against a per-unit Python loop on random grown graphs, and batched against one batch."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from graphkit import OPS, apply_op, draw_case
from selfexpand import ops
from selfexpand.errors import ConfigError
from selfexpand.graph import GateModulator, GrowableNet, Layer
from selfexpand.report.inactivity import LAYER_KEYS, inactivity, outgoing_norms, output_spread, unit_activity

F, T = False, True


def known_net() -> tuple[GrowableNet, torch.Tensor]:
    """``x[:, 0] = 0..199``, ``x[:, 1] = 1``. Layer h1 (ReLU, 9 units):

    u0 relu(k) active | u1 bias -1000: always 0, dead | u2 constant 3: std 0, dead |
    u3 non-zero on 2 rows (1 %): dead | u4 non-zero on 4 rows (2 %): not dead |
    u5 outgoing norm 0.005 (0.5 % of the median 1): silent | u6 norm 0.02 (2 %): not silent |
    u7 read by no connection: silent | u8 norms 0.009 and 0.012 in two connections: 0.015, not silent.
    Connection A (h1 -> output) reads units [0..6, 8], B (h1 -> h2) reads [8, 3, 0]: the units' norms
    are [sqrt 2, 1, 1, sqrt 2, 1, .005, .02, 0, .015], median 1.

    Layer h2 (identity, gated, 3 units): u0 = 0.012 h1_u8 active; u1 = h1_u3, zero on 99 % of rows
    but not ReLU, so not dead; u2 has factor 0: dead and silent.
    """
    net = GrowableNet(2, 2)
    net.add_layer("h1", Layer(9, "relu"), before="output")
    net.add_layer("h2", Layer(3, "identity", modulator=GateModulator(3)), before="output")
    w1 = torch.tensor([[1.0, 0], [1, 0], [0, 0], [1, 0], [1, 0], [1, 0], [1, 0], [1, 0], [1, 0]])
    net.add_connection("input", "h1", w1)
    a = torch.zeros(2, 8)  # columns: units 0, 1, 2, 3, 4, 5, 6, 8
    a[:, 0] = torch.tensor([1.0, 0])
    a[:, 1] = torch.tensor([0.6, 0.8])
    a[:, 2] = torch.tensor([0.0, 1])
    a[:, 3] = torch.tensor([1.0, 0])
    a[:, 4] = torch.tensor([0.0, -1])
    a[:, 5] = torch.tensor([0.003, 0.004])
    a[:, 6] = torch.tensor([0.0, 0.02])
    a[:, 7] = torch.tensor([0.009, 0])
    net.add_connection("h1", "output", a, in_index=torch.tensor([0, 1, 2, 3, 4, 5, 6, 8]))
    b = torch.tensor([[0.012, 0, 0], [0, 1, 0], [0, 0, 1]])
    net.add_connection("h1", "h2", b, in_index=torch.tensor([8, 3, 0]))
    net.add_connection("h2", "output", torch.tensor([[1.0, 0, 1], [0, 1, 0]]))
    with torch.no_grad():
        net.layers["h1"].bias.copy_(torch.tensor([0, -1000, 3, -197.5, -195.5, 0, 0, 0, 0]))
        net.layers["h2"].modulator.gate.copy_(torch.tensor([0.0, 0, -1]))
    net.invalidate()
    k = torch.arange(200, dtype=torch.float32)
    return net, torch.stack([k, torch.ones(200)], 1)


def test_known_units_are_classified_exactly():
    net, x = known_net()
    flags = unit_activity(net, x)
    h1, h2 = flags["h1"], flags["h2"]
    assert h1.dead.tolist() == [F, T, T, T, F, F, F, F, F]
    assert h1.silent.tolist() == [F, F, F, F, F, T, F, T, F]
    assert h1.inactive.tolist() == [F, T, T, T, F, T, F, T, F]
    assert h2.dead.tolist() == [F, F, T] and h2.silent.tolist() == [F, F, T]
    assert h1.zero_fraction[[1, 2, 3, 4]].tolist() == [1.0, 0.0, 0.99, 0.98]
    assert h2.zero_fraction[1].item() == 0.99  # zero on 99 % too, but identity: the rule is ReLU's
    assert h1.std[2].item() == 0.0 and h2.std[2].item() == 0.0
    expected = torch.tensor([math.sqrt(2), 1, 1, math.sqrt(2), 1, 0.005, 0.02, 0, 0.015], dtype=torch.float64)
    torch.testing.assert_close(h1.outgoing_norm, expected, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(h2.outgoing_norm, torch.tensor([1.0, 1, 0], dtype=torch.float64))
    assert not bool(h1.new.any()) and not bool(h2.new.any())


def test_known_network_figures():
    net, x = known_net()
    figures = inactivity(net, x)
    assert figures["layers"]["h1"] == {"units": 9, "dead": 3, "silent": 2, "inactive": 5, "new_units": 0,
                                       "new_dead": 0, "new_silent": 0, "new_inactive": 0}
    assert figures["layers"]["h2"] == {"units": 3, "dead": 1, "silent": 1, "inactive": 1, "new_units": 0,
                                       "new_dead": 0, "new_silent": 0, "new_inactive": 0}
    assert (figures["units"], figures["inactive"]) == (12, 6)
    assert figures["inactive_units_fraction"] == 0.5
    assert figures["inactive_new_units_fraction"] is None


def test_silence_scales_with_the_layer_median():
    """The same outgoing weights times 1000 give the same verdicts: the rule is relative."""
    net, x = known_net()
    with torch.no_grad():
        for name in ("h1_to_output", "h1_to_h2"):
            net.connections[name].weight.mul_(1000)
    assert unit_activity(net, x)["h1"].silent.tolist() == [F, F, F, F, F, T, F, T, F]


def test_masked_edges_do_not_count_towards_the_outgoing_norm():
    net, x = known_net()
    ops.prune_edges(net, [("h1_to_output", 0, 0)])  # unit 0 keeps only its edge into h2
    assert outgoing_norms(net)["h1"][0].item() == pytest.approx(1.0)
    ops.prune_edges(net, [("h1_to_h2", 2, 2)])  # and now none: silent
    assert unit_activity(net, x)["h1"].silent[0].item() is True


def new_units_net() -> tuple[GrowableNet, torch.Tensor]:
    net = GrowableNet.mlp([2, 3, 2], seed=0)
    with torch.no_grad():
        net.connections["input_to_h1"].weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1]]))
        net.connections["h1_to_output"].weight.copy_(torch.tensor([[1.0, 1, 1], [1, -1, 2]]))
        net.layers["h1"].bias.zero_()
    return net, torch.rand(50, 2, generator=torch.Generator().manual_seed(0))


def test_new_units_after_add_units_split_edges_and_insert_layer():
    net, x = new_units_net()
    # u3 = relu(-1): dead; u3, u4 have zero outgoing weights: silent
    ops.add_units(net, "h1", 2, incoming={"input_to_h1": torch.tensor([[0.0, 0], [1, 0]])},
                  bias=torch.tensor([-1.0, 0]), outgoing={"h1_to_output": torch.zeros(2, 2)})
    figures = inactivity(net, x)
    assert figures["layers"]["h1"] == {"units": 5, "dead": 1, "silent": 2, "inactive": 2, "new_units": 2,
                                       "new_dead": 1, "new_silent": 2, "new_inactive": 2}
    assert figures["inactive_new_units_fraction"] == 1.0
    event = ops.split_edges(net, [("h1_to_output", 0, 0), ("h1_to_output", 1, 2)], eps=0.0)
    split = event.details["layer"]
    figures = inactivity(net, x)
    # the split layer: relu(x0) -> w 1, relu(x0 + x1) -> w 2; both alive and heard
    assert figures["layers"][split] == {"units": 2, "dead": 0, "silent": 0, "inactive": 0, "new_units": 2,
                                        "new_dead": 0, "new_silent": 0, "new_inactive": 0}
    assert figures["layers"]["h1"]["inactive"] == 2 and figures["layers"]["h1"]["new_units"] == 2
    totals = tuple(figures[key] for key in ("units", "new_units", "inactive", "new_inactive"))
    assert totals == (7, 4, 2, 2)
    assert figures["inactive_units_fraction"] == 2 / 7 and figures["inactive_new_units_fraction"] == 0.5
    event = ops.insert_identity_layer(net, "input_to_h1")  # x >= 0: relu(I x) = x
    inserted = event.details["layer"]
    figures = inactivity(net, x)
    assert figures["layers"][inserted] == {"units": 2, "dead": 0, "silent": 0, "inactive": 0, "new_units": 2,
                                           "new_dead": 0, "new_silent": 0, "new_inactive": 0}
    assert (figures["units"], figures["new_units"], figures["inactive"]) == (9, 6, 2)
    assert figures["inactive_new_units_fraction"] == 2 / 6


def test_a_graph_without_hidden_layers():
    net = GrowableNet.mlp([3, 2], seed=0)
    figures = inactivity(net, torch.rand(5, 3))
    assert figures["layers"] == {} and figures["units"] == 0
    assert figures["inactive_units_fraction"] is None and figures["inactive_new_units_fraction"] is None


def test_layer_outputs_are_what_the_layers_read():
    net, x = known_net()
    with torch.no_grad():
        outs = net.layer_outputs(x)
        assert list(outs) == net.order
        torch.testing.assert_close(outs["output"], net(x), rtol=0, atol=0)
        h1 = torch.relu(x @ net.connections["input_to_h1"].weight.T + net.layers["h1"].bias)
        torch.testing.assert_close(outs["h1"], h1)
        h2 = h1[:, [8, 3, 0]] @ net.connections["h1_to_h2"].weight.T * torch.tensor([1.0, 1, 0])
        torch.testing.assert_close(outs["h2"], h2)


# ---------------------------------------------------------------------- batching and numerics
def test_batched_accumulation_equals_one_batch():
    net, x = known_net()
    whole = unit_activity(net, x, batch_size=x.shape[0])
    for batch_size in (1, 7, 64, 199):
        parts = unit_activity(net, x, batch_size=batch_size)
        for name, flags in whole.items():
            for field in ("dead", "silent", "new"):
                assert torch.equal(getattr(parts[name], field), getattr(flags, field)), (batch_size, name)
            torch.testing.assert_close(parts[name].std, flags.std, rtol=1e-12, atol=1e-12)
            assert torch.equal(parts[name].zero_fraction, flags.zero_fraction)
        assert inactivity(net, x, batch_size) == inactivity(net, x, x.shape[0])


def test_a_constant_far_from_zero_has_no_spread_and_a_small_spread_survives_the_offset():
    """Batch sizes that are not powers of two: a float32 constant still has std exactly 0, and a
    spread of ~3e-4 around 1000 is measured as torch's float64 std measures it."""
    net = GrowableNet(1, 1)
    net.add_layer("h1", Layer(2, "identity"), before="output")
    net.add_connection("input", "h1", torch.tensor([[0.0], [1e-3]]))
    net.add_connection("h1", "output", torch.ones(1, 2))
    with torch.no_grad():
        net.layers["h1"].bias.copy_(torch.tensor([1234.567, 1000.0]))
    net.invalidate()
    x = torch.rand(1000, 1, generator=torch.Generator().manual_seed(3))
    reference = net.layer_outputs(x)["h1"].detach().double().std(0, unbiased=False)
    for batch_size in (3, 7, 333, 1000):
        std, _ = output_spread(net, x, batch_size)["h1"]
        assert std[0].item() == 0.0, batch_size
        torch.testing.assert_close(std[1], reference[1], rtol=1e-9, atol=0)
    assert unit_activity(net, x, 7)["h1"].dead.tolist() == [T, F]


def test_eval_mode_for_the_analysis_and_training_mode_restored():
    """A batch-norm front normalises with running statistics in eval mode, so batches agree."""
    front = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    with torch.no_grad():
        front[1].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    net = GrowableNet.mlp([4, 5, 2], seed=0, front=front)
    net.train()
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    before = front[1].running_mean.clone()
    assert inactivity(net, x, 5) == inactivity(net, x, 64)
    assert net.training and front.training
    assert torch.equal(front[1].running_mean, before)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "64"])
def test_bad_batch_size_is_refused(batch_size):
    net, x = known_net()
    message = f"batch_size must be a positive integer, got batch_size={batch_size!r}"
    with pytest.raises(ConfigError, match=message):
        inactivity(net, x, batch_size)


def test_inputs_without_rows_are_refused():
    net, _ = known_net()
    with pytest.raises(ConfigError, match=r"x must be a tensor with at least one row, got \(0, 2\)"):
        inactivity(net, torch.zeros(0, 2))


# ---------------------------------------------------------------------- brute force on random graphs
def brute_force(net, x) -> dict[str, tuple[list[bool], list[bool], list[bool]]]:
    """``(dead, silent, new)`` per hidden layer, one unit and one column at a time."""
    net.eval()
    with torch.no_grad():
        outs = net.layer_outputs(x)
    result = {}
    for name in net.hidden_layers():
        layer = net.layers[name]
        h = outs[name].double()
        factor = layer.factor()
        dead, norms = [], []
        for u in range(layer.size):
            column = h[:, u]
            zero = int((column == 0).sum())
            relu_rule = isinstance(layer.activation, nn.ReLU) and 100 * zero >= 99 * len(column)
            dead.append(column.std(unbiased=False).item() < 1e-6 or relu_rule)
            square = 0.0
            for conn in net.outgoing(name):
                weight = conn.effective_weight().detach().double()
                for j, source in enumerate(conn.source_units(layer.size).tolist()):
                    if source == u:
                        square += float((weight[:, j] ** 2).sum())
            scale = 1.0 if factor is None else abs(float(factor.detach()[u]))
            norms.append(math.sqrt(square) * scale)
        median = statistics.median(norms)
        silent = [n < 0.01 * median or n == 0 for n in norms]
        new = [False] * layer.size if layer.grown is None else layer.grown.tolist()
        result[name] = (dead, silent, new)
    return result


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_grown_graphs_agree_with_a_per_unit_loop(data):
    case = draw_case(data)
    kinds = data.draw(st.lists(st.sampled_from(sorted(OPS)), min_size=0, max_size=5), label="ops")
    for kind in kinds:
        apply_op(case, kind, data)
    net = case.net
    n_in = net.layers[net.input_name].size
    x = torch.randn(300, n_in, generator=case.gen)
    if data.draw(st.booleans(), label="sparse inputs"):
        x = torch.relu(x - 2.0)  # mostly zeros: ReLU units zero on >= 99 % of rows occur
    expected = brute_force(net, x)
    batch_size = data.draw(st.sampled_from([1, 7, 300, 4096]), label="batch_size")
    flags = unit_activity(net, x, batch_size)
    assert set(flags) == set(expected)
    for name, (dead, silent, new) in expected.items():
        got = flags[name]
        assert got.dead.tolist() == dead, (name, case.log)
        assert got.silent.tolist() == silent, (name, case.log)
        assert got.new.tolist() == new, (name, case.log)
    figures = inactivity(net, x, batch_size)
    for name, (dead, silent, new) in expected.items():
        inactive = [d or s for d, s in zip(dead, silent)]
        counts = figures["layers"][name]
        assert counts["inactive"] == sum(inactive) and counts["new_units"] == sum(new)
        assert counts["new_inactive"] == sum(i and n for i, n in zip(inactive, new))
    assert set(figures) >= set(LAYER_KEYS)
