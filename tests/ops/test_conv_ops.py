"""Conv growth ops keep the function (issue #24), on random tiny conv graphs (``convkit``): kernel sizes,
strides, paddings, pooling, batch norm, the flatten boundary, skip connections with channel subsets.
Outputs are compared in eval mode (float32, 1e-5); every graph is also exported and rebuilt from its spec, and a
chain's export converted back with ``GrowableNet.from_module``."""

from __future__ import annotations

import json
import math

import pytest
import torch
from convkit import conv_layers, draw_conv_case, outputs
from graphkit import TOL
from hypothesis import given, settings
from hypothesis import strategies as st

from selfexpand import ops
from selfexpand.errors import ConfigError, GrowthError
from selfexpand.graph import ConvConnection, GrowableNet
from selfexpand.graph.conv import is_spatial, positions, spatial_sizes

SETTINGS = settings(max_examples=50, deadline=None)


def check_export_and_spec(net, x, reference):
    """Export, the spec round trip and, for a chain (exported as an ``nn.Sequential``), ``from_module``
    of the export: the same outputs."""
    net.eval()
    with torch.no_grad():
        plain = net.export().eval()
        torch.testing.assert_close(plain(x), reference, **TOL)
        if isinstance(plain, torch.nn.Sequential):
            back = GrowableNet.from_module(plain, input_shape=tuple(x.shape[1:])).eval()
            torch.testing.assert_close(back(x), reference, **TOL)
        rebuilt = GrowableNet.from_spec(json.loads(json.dumps(net.spec())), net.state_dict()).eval()
        torch.testing.assert_close(rebuilt(x), reference, rtol=0, atol=0)
    spatial_sizes(net, strict=True)
    assert net.counts()["stored_params"] == sum(p.numel() for p in net.parameters())


def nonneg_output(case, layer: str) -> bool:
    net = case.net
    if layer == net.input_name:
        return bool((case.x >= 0).all())
    return isinstance(net.layers[layer].activation, torch.nn.ReLU)


def op_add(case, data):
    net = case.net
    layer = data.draw(st.sampled_from(conv_layers(net)), label="add layer")
    n = data.draw(st.integers(1, 3), label="n")
    norm = net.layers[layer].norm
    before = None if norm is None else {k: v.detach().clone() for k, v in norm.state_dict().items()}
    old = net.layers[layer].size
    kw = {}
    if data.draw(st.booleans(), label="explicit values"):
        kw["incoming"] = {k: torch.rand(n, *c.shape[1:], generator=case.gen) - 0.5 for k, c in net.connections.items()
                          if c.target == layer and c.out_index is None}
        kw["bias"] = torch.rand(n, generator=case.gen) - 0.5
    event = ops.add_channels(net, layer, n, generator=case.gen, **kw)
    assert event.units_added == n and net.layers[layer].size == old + n
    assert net.layers[layer].new_units().tolist() == [False] * old + [True] * n or \
        net.layers[layer].new_units()[old:].all()
    if norm is not None:
        norm = net.layers[layer].norm
        for key in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(norm, key).detach()[:old], before[key])
        assert norm.weight.detach()[old:].eq(1).all() and norm.bias.detach()[old:].eq(0).all()
        assert norm.running_mean[old:].eq(0).all() and norm.running_var[old:].eq(1).all()
    case.log.append(f"add_channels({layer}, {n})")


def op_insert(case, data):
    net = case.net
    names = [n for n, c in net.connections.items() if is_spatial(net, c.source)]
    name = data.draw(st.sampled_from(sorted(names)), label="insert connection")
    source = net.connections[name].source
    signed = True if not nonneg_output(case, source) else data.draw(st.booleans(), label="signed")
    k = data.draw(st.sampled_from([1, 3]), label="kernel")
    bn = data.draw(st.booleans(), label="insert bn")
    event = ops.insert_conv_layer(net, name, kernel_size=k, activation="relu", signed=signed, batch_norm=bn)
    assert event.details["layer"] in conv_layers(net)
    case.log.append(f"insert_conv_layer({name}, signed={signed}, k={k}, bn={bn})")


def op_split(case, data):
    net = case.net
    layers = [n for n in conv_layers(net) if not any(c.out_index is not None for c in net.incoming(n))]
    if not layers:
        return
    layer = data.draw(st.sampled_from(layers), label="split layer")
    size = net.layers[layer].size
    sources = data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=3), label="sources")
    ops.split_units(net, layer, sources)  # dispatches to split_channels on a conv layer
    assert net.layers[layer].size == size + len(sources)
    case.log.append(f"split_channels({layer}, {sources})")


def op_remove_zero(case, data):
    """Make one channel's output exactly 0 (incoming kernels, bias, batch-norm shift), then remove it."""
    net = case.net
    layers = [n for n in conv_layers(net) if net.layers[n].size > 1]
    if not layers:
        return
    layer = data.draw(st.sampled_from(layers), label="remove layer")
    target = net.layers[layer]
    ch = data.draw(st.integers(0, target.size - 1), label="channel")
    with torch.no_grad():
        for c in net.incoming(layer):
            rows = (c.target_units(target.size) == ch).nonzero().flatten()
            c.weight[rows] = 0
        target.bias[ch] = 0
        if target.norm is not None:
            target.norm.bias[ch] = 0
            target.norm.running_mean[ch] = 0
    reference = outputs(net, case.x)
    ops.remove_channels(net, layer, [ch])
    case.log.append(f"remove_channels({layer}, [{ch}])")
    return reference


OPS = {"add": op_add, "insert": op_insert, "split": op_split, "remove_zero": op_remove_zero}


def applied_ops(case, data, kinds):
    """Apply ``kinds`` to ``case`` in turn, yielding after each op its eval-mode outputs and the outputs it
    promises (those before it, or the op's own reference)."""
    for kind in kinds:
        reference = outputs(case.net, case.x)
        changed = OPS[kind](case, data)
        case.net.eval()
        yield outputs(case.net, case.x), changed if changed is not None else reference


def _log(case):
    return lambda m: "\n".join([m, *case.log])


@pytest.mark.parametrize("kind", list(OPS))
@SETTINGS
@given(data=st.data())
def test_conv_op_keeps_the_function(kind, data):
    case = draw_conv_case(data)
    for got, promised in applied_ops(case, data, [kind]):
        torch.testing.assert_close(got, promised, **TOL, msg=_log(case))
    check_export_and_spec(case.net, case.x, outputs(case.net, case.x))


@SETTINGS
@given(data=st.data())
def test_conv_op_sequences_keep_the_function(data):
    case = draw_conv_case(data)
    kinds = data.draw(st.lists(st.sampled_from(list(OPS)), min_size=2, max_size=4), label="ops")
    for got, promised in applied_ops(case, data, kinds):
        torch.testing.assert_close(got, promised, **TOL, msg=_log(case))
    check_export_and_spec(case.net, case.x, outputs(case.net, case.x))


@SETTINGS
@given(data=st.data())
def test_from_module_round_trip_of_grown_conv_chains(data):
    """50 random conv chains (no skips: what an ``nn.Sequential`` holds), grown by 1-3 random ops, exported
    to an ``nn.Sequential`` and converted back with ``from_module``: the same outputs (``check_export_and_spec``)."""
    case = draw_conv_case(data, chain=True)
    for kind in data.draw(st.lists(st.sampled_from(["add", "insert", "split"]), min_size=1, max_size=3), label="ops"):
        OPS[kind](case, data)
    case.net.eval()
    assert isinstance(case.net.export(), torch.nn.Sequential), case.log
    check_export_and_spec(case.net, case.x, outputs(case.net, case.x))


@SETTINGS
@given(data=st.data())
def test_split_channels_is_exact_in_training_mode_too(data):
    """Copies share their source's batch statistics, so even training-mode batch norm is preserved."""
    case = draw_conv_case(data)
    net = case.net.train()
    layer = conv_layers(net)[-1]
    if any(c.out_index is not None for c in net.incoming(layer)):
        return
    state = {k: v.clone() for k, v in net.state_dict().items()}
    before = net(case.x).detach()
    net.load_state_dict(state)  # undo the running-statistics update
    ops.split_channels(net, layer, [0])
    torch.testing.assert_close(net(case.x).detach(), before, **TOL)


def test_insert_with_batch_norm_is_exact_in_eval_mode_only():
    """The docstring's account of training mode: the new layer standardises each channel by the batch."""
    net = GrowableNet.cnn((2, 6, 6), [3], output=2, batch_norm=False, pool=None, seed=0)
    x = torch.rand(5, 2, 6, 6, generator=torch.Generator().manual_seed(0)) + 0.5
    net.eval()
    reference = outputs(net, x)
    event = ops.insert_conv_layer(net, "input_to_h1", signed=False, batch_norm=True)
    new = net.layers[event.details["layer"]]
    assert new.norm.weight.detach().eq(math.sqrt(1 + 1e-5)).all()
    net.eval()
    torch.testing.assert_close(outputs(net, x), reference, **TOL)
    net.train()
    with torch.no_grad():
        acts = net.layer_outputs(x)
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    expected = torch.relu((x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + 1e-5)
                          * math.sqrt(1 + 1e-5))
    torch.testing.assert_close(acts[event.details["layer"]], expected, **TOL)
    assert not torch.allclose(acts["output"], reference, atol=1e-3)
    assert not torch.equal(new.norm.running_mean, torch.zeros(2))  # statistics moved towards the batch's
    net.eval()
    assert not torch.allclose(outputs(net, x), reference, atol=1e-4)


def test_add_channels_default_values_and_flatten_columns():
    net = GrowableNet.cnn((1, 4, 4), [2], output=3, seed=0)
    p = positions(net, "h1")
    ops.add_channels(net, "h1", 2, generator=torch.Generator().manual_seed(0))
    w = net.connections["input_to_h1"].weight.detach()
    bound = 1 / math.sqrt(1 * 9)
    assert w[2:].abs().max() <= bound and w[2:].abs().max() > 0
    assert net.connections["h1_to_output"].shape == (3, 4 * p)
    assert net.connections["h1_to_output"].weight.detach()[:, 2 * p:].eq(0).all()


def test_bad_inputs_leave_the_net_unchanged():
    net = GrowableNet.cnn((1, 4, 4), [2], [3], output=2, seed=0)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(GrowthError):
        ops.add_channels(net, "h2", 1)  # a dense layer
    with pytest.raises(ConfigError):
        ops.add_channels(net, "h1", 1, incoming={"input_to_h1": torch.zeros(1, 1, 2, 2)})
    with pytest.raises(ConfigError):
        ops.insert_conv_layer(net, "input_to_h1", kernel_size=2)
    with pytest.raises(GrowthError):
        ops.insert_conv_layer(net, "h2_to_output")  # reads a flat layer
    with pytest.raises(GrowthError):
        ops.remove_channels(net, "h1", [0, 1])
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert isinstance(net.connections["input_to_h1"], ConvConnection)


def test_cnn_conventions():
    net = GrowableNet.cnn((3, 8, 8), [4, 8], [16], output=10, seed=0)
    assert spatial_sizes(net) == {"input": ((8, 8), (8, 8)), "h1": ((8, 8), (4, 4)), "h2": ((4, 4), (2, 2))}
    assert net.connections["h2_to_h3"].shape == (16, 8 * 4)
    assert all(net.layers[n].norm is not None and net.layers[n].pool == "max" for n in ("h1", "h2"))
    with pytest.raises(ConfigError):
        GrowableNet.cnn((1, 2, 2), [2, 2, 2], output=2)  # pooled below 1 x 1
