"""``GrowableNet.from_module``: a user's own ``nn.Sequential`` as a growable network (issue #24).

Random Sequentials (conv and dense parts, nested Sequentials, batch norm, dropout, pooling) give the
same outputs after conversion and after ``export()`` in evaluation mode, and in training mode with a
fixed seed (batch-norm outputs and running-statistic updates equal); the spec records dropout rates
and batch-norm settings; unsupported modules are refused with their name and position; a converted
CNN grows with the ops while the user's own optimizer follows.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
from torch import nn

from selfexpand import ConfigError, ops
from selfexpand.graph import GrowableNet

TOL = dict(rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------- helpers
def _randomize_norm(bn: nn.Module, gen: torch.Generator) -> None:
    """Random affine values and running statistics, so evaluation mode is not the identity."""
    with torch.no_grad():
        if bn.affine:
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.3)
        if bn.track_running_stats:
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.3)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.num_batches_tracked.fill_(int(torch.randint(0, 5, (1,), generator=gen)))


def _activation(rng: random.Random) -> nn.Module | None:
    return rng.choice([nn.ReLU(), nn.LeakyReLU(rng.choice([0.01, 0.2])), nn.Tanh(), nn.GELU(),
                       nn.GELU(approximate="tanh"), nn.SiLU(), nn.Sigmoid(), nn.Identity(), None])


def _norm(kind, n, rng, gen):
    bn = kind(n, momentum=rng.choice([0.1, 0.05, 0.3, None]), eps=rng.choice([1e-5, 1e-3]),
              affine=rng.random() < 0.8, track_running_stats=rng.random() < 0.85)
    _randomize_norm(bn, gen)
    return bn


def _maybe_nest(rng, mods: list) -> list:
    return [nn.Sequential(*mods)] if rng.random() < 0.4 else mods


def random_sequential(seed: int):
    """A random supported ``nn.Sequential``, its ``input_shape`` (None for a dense one) and an input."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dropout = seed % 3 == 0
    mods: list = []
    conv = seed % 5 != 4
    if conv:
        c, h, w = rng.randint(1, 3), rng.randint(6, 12), rng.randint(6, 12)
        shape = (c, h, w)
        hw = (h, w)
        for _ in range(rng.randint(1, 3)):
            out = rng.randint(2, 5)
            k = rng.randint(1, min(3, *hw))
            stride = rng.choice([1, 1, 2])
            if stride == 1 and k % 2 and rng.random() < 0.3:
                conv_mod, pad = nn.Conv2d(c, out, k, padding="same", bias=rng.random() < 0.8), k // 2
            else:
                pad = rng.randint(0, k // 2)
                conv_mod = nn.Conv2d(c, out, k, stride=stride, padding=pad, bias=rng.random() < 0.8)
            hw = tuple((n + 2 * pad - k) // stride + 1 for n in hw)
            block = [conv_mod]
            if rng.random() < 0.5:
                block.append(_norm(nn.BatchNorm2d, out, rng, gen))
            act = _activation(rng)
            pool = None
            if min(hw) >= 2 and rng.random() < 0.6:
                kind = rng.choice(["max", "avg", "adaptive"])
                if kind == "adaptive" and hw[0] % 2 == 0 and hw[1] % 2 == 0:
                    pool = nn.AdaptiveAvgPool2d((hw[0] // 2, hw[1] // 2))
                else:
                    pool = nn.MaxPool2d(2) if kind == "max" else nn.AvgPool2d(2)
                hw = (hw[0] // 2, hw[1] // 2)
            monotone = isinstance(act, (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU))
            if isinstance(pool, nn.MaxPool2d) and monotone and rng.random() < 0.5:
                block += [pool, act]  # max pooling before a monotone activation: the same function
            else:
                block += [m for m in (act, pool) if m is not None]
            if dropout and rng.random() < 0.5:
                block.append(nn.Dropout(rng.choice([0.1, 0.5])))
            if rng.random() < 0.2:
                block.append(nn.Identity())
            mods += _maybe_nest(rng, block)
            c = out
        mods.append(nn.Flatten())
        features = c * hw[0] * hw[1]
    else:
        shape = None
        features = n_in = rng.randint(3, 10)
        if rng.random() < 0.5:
            mods.append(nn.Flatten())
    for _ in range(rng.randint(0, 2)):
        width = rng.randint(2, 8)
        block = [nn.Linear(features, width, bias=rng.random() < 0.8)]
        if rng.random() < 0.5:
            block.append(_norm(nn.BatchNorm1d, width, rng, gen))
        act = _activation(rng)
        if act is not None:
            block.append(act)
        if dropout and rng.random() < 0.5:
            block.append(nn.Dropout(0.2))
        mods += _maybe_nest(rng, block)
        features = width
    mods.append(nn.Linear(features, rng.randint(1, 4)))
    x = torch.randn(8, *(shape or (n_in,)), generator=gen)
    return nn.Sequential(*mods), shape, x


def _norms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]


def _convert(module, shape):
    return GrowableNet.from_module(module, input_shape=shape)


# ---------------------------------------------------------------------------------------- same outputs
@pytest.mark.parametrize("seed", range(10))
def test_random_sequential_same_outputs_eval_and_train(seed):
    module, shape, x = random_sequential(seed)
    net = _convert(module, shape)
    exported = net.export()
    assert any(isinstance(m, nn.BatchNorm1d) for m in module.modules()) == \
        any(isinstance(m, nn.BatchNorm1d) for m in exported.modules())
    models = [module, net, exported, GrowableNet.from_spec(net.spec(), net.state_dict())]
    for m in models:
        m.eval()
    with torch.no_grad():
        want = module(x)
        for m in models[1:]:
            torch.testing.assert_close(m(x), want, **TOL)
    # training mode, same seed: batch-norm batch statistics, dropout masks and running statistics agree
    outs = []
    for m in models:
        m.train()
        torch.manual_seed(1234)
        outs.append(m(x))
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], **TOL)
    ref = _norms(module)
    for m in models[1:]:
        got = _norms(m)
        assert len(got) == len(ref)
        for a, b in zip(ref, got):
            assert (a.running_mean is None) == (b.running_mean is None)
            if a.running_mean is not None:
                torch.testing.assert_close(b.running_mean, a.running_mean, **TOL)
                torch.testing.assert_close(b.running_var, a.running_var, **TOL)
                assert int(b.num_batches_tracked) == int(a.num_batches_tracked)


def test_random_sequentials_cover_the_supported_modules():
    kinds = set()
    for seed in range(10):
        module, _, _ = random_sequential(seed)
        kinds |= {type(m) for m in module.modules()}
    want = {nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Flatten, nn.MaxPool2d,
            nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.ReLU, nn.Tanh, nn.GELU, nn.Sigmoid, nn.SiLU, nn.LeakyReLU}
    assert want <= kinds, want - kinds
    nested = [s for s in range(10) if any(type(c) is nn.Sequential for c in random_sequential(s)[0].children())]
    assert nested


# ---------------------------------------------------------------------------------------- the spec records
def _recorded_module():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3, momentum=0.2, eps=1e-3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4, momentum=None, affine=False),
                      nn.LeakyReLU(0.2)),
        nn.Flatten(), nn.Linear(4 * 2 * 2, 5), nn.BatchNorm1d(5, momentum=0.3, track_running_stats=False),
        nn.GELU(approximate="tanh"), nn.Dropout(0.4),
        nn.Linear(5, 6), nn.BatchNorm1d(6, momentum=0.05), nn.SiLU(), nn.Linear(6, 2))


def test_spec_records_dropout_rates_and_batch_norm_settings(tmp_path):
    module = _recorded_module()
    net = GrowableNet.from_module(module, input_shape=(2, 8, 8))
    layers = net.spec()["layers"]
    assert net.order == ["input", "h1", "h2", "h3", "h4", "output"]
    assert layers["h1"]["conv"]["momentum"] == 0.2 and layers["h1"]["conv"]["eps"] == 1e-3
    assert layers["h1"]["dropout"] == 0.25 and layers["h1"]["conv"]["pool"] == "max"
    assert layers["h2"]["conv"]["momentum"] is None and layers["h2"]["conv"]["affine"] is False
    assert layers["h2"]["activation"] == {"type": "leaky_relu", "negative_slope": 0.2}
    assert "dropout" not in layers["h2"]
    assert layers["h3"]["norm"] == {"eps": 1e-5, "momentum": 0.3, "affine": True, "track_running_stats": False}
    assert layers["h3"]["dropout"] == 0.4
    assert layers["h3"]["activation"] == {"type": "gelu", "approximate": "tanh"}
    assert layers["h4"]["norm"]["momentum"] == 0.05 and layers["h4"]["activation"] == "silu"
    assert "norm" not in layers["output"] and "dropout" not in layers["output"]
    # counts: batch-norm affine values are parameters (h2's is not affine)
    bn_params = 2 * 3 + 2 * 5 + 2 * 6
    plain = sum(p.numel() for n, p in module.named_parameters())
    assert net.counts()["params"] == net.counts()["stored_params"] == plain
    assert plain - sum(m.weight.numel() + m.bias.numel() for m in module.modules()
                       if isinstance(m, (nn.Linear, nn.Conv2d))) == bn_params
    # save / load and from_spec give the same network, in training mode too
    path = net.save(tmp_path / "net.safetensors")
    loaded = GrowableNet.load(path)
    assert loaded.spec() == net.spec()
    x = torch.randn(5, 2, 8, 8)
    for m in (module, net, loaded):
        m.train()
    outs = []
    for m in (module, net, loaded):
        torch.manual_seed(7)
        outs.append(m(x))
    torch.testing.assert_close(outs[1], outs[0], **TOL)
    torch.testing.assert_close(outs[2], outs[0], **TOL)


def test_converted_network_keeps_device_dtype_and_mode():
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double().eval()
    net = GrowableNet.from_module(module)
    assert not net.training and net.layers["h1"].norm.running_mean.dtype == torch.float64
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(net(x), module(x))
    single = GrowableNet.from_module(nn.Linear(3, 2))
    assert single.order == ["input", "output"]


# ---------------------------------------------------------------------------------------- refusals
class Scale(nn.Module):
    def forward(self, x):
        return 2 * x


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


REFUSED = {
    "groups": (nn.Conv2d(4, 4, 3, groups=2), "Conv2d(groups=2) is not supported: groups must be 1"),
    "dilation": (nn.Conv2d(4, 4, 3, dilation=2), "Conv2d(dilation=(2, 2)) is not supported: dilation must be 1"),
    "lstm": (nn.LSTM(4, 4), "LSTM is not supported"),
    "custom": (Scale(), "Scale is not supported: a module of its own class"),
    "residual": (Residual(), "Residual is not supported"),
    "conv1d": (nn.Conv1d(4, 4, 3), "Conv1d is not supported"),
    "embedding": (nn.Embedding(10, 4), "Embedding is not supported"),
    "softmax": (nn.Softmax(dim=1), "Softmax is not supported: not an elementwise activation"),
    "stride": (nn.Conv2d(4, 4, 3, stride=(1, 2)), "Conv2d(stride=(1, 2)) is not supported: stride must be the same"),
    "pool_stride": (nn.MaxPool2d(3, stride=2),
                    "MaxPool2d(kernel_size=3, stride=2) is not supported: stride must equal kernel_size"),
    "pool_padding": (nn.AvgPool2d(2, padding=1), "AvgPool2d(padding=1) is not supported: padding must be 0"),
    "dropout2d": (nn.Dropout2d(0.5), "Dropout2d is not supported"),
    "subclass": (type("MyLinear", (nn.Linear,), {})(4, 4), "MyLinear is not supported"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unsupported_module_refused_with_name_and_position(case):
    bad, message = REFUSED[case]
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                           nn.Sequential(nn.Identity(), bad), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    with pytest.raises(ConfigError) as info:
        GrowableNet.from_module(module, input_shape=(3, 8, 8))
    assert f"module 3 (2.1): {message}" in str(info.value)


@pytest.mark.parametrize("mods, where, message", [
    ([nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2)], "module 2 (2)",
     "batch norm after the act"),
    ([nn.Linear(3, 4), nn.Dropout(0.1), nn.ReLU(), nn.Linear(4, 2)], "module 2 (2)", "after dropout"),
    ([nn.ReLU(), nn.Linear(3, 2)], "module 0 (0)", "only Flatten may come before"),
    ([nn.Linear(3, 4), nn.ReLU(), nn.Tanh(), nn.Linear(4, 2)], "module 2 (2)", "a second activation"),
    ([nn.Linear(3, 4), nn.Linear(5, 2)], "module 1 (1)", "Linear(in_features=5)"),
    ([nn.Linear(3, 4), nn.BatchNorm1d(4, bias=False), nn.Linear(4, 2)], "module 1 (1)",
     "BatchNorm1d(bias=False)"),
])
def test_orders_the_graph_cannot_express_refused(mods, where, message):
    with pytest.raises(ConfigError) as info:
        GrowableNet.from_module(nn.Sequential(*mods))
    assert str(info.value).startswith(where) and message in str(info.value)


@pytest.mark.parametrize("mods, message", [
    ([nn.Conv2d(3, 4, 3), nn.AvgPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 2)],
     "module 2 (2): ReLU is not supported: an activation after pooling"),
    ([nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.GELU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 2)],
     "module 2 (2): GELU is not supported: an activation after pooling"),
    ([nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2), nn.Conv2d(2, 2, 1)],
     "module 3 (3): Conv2d is not supported: a Conv2d must read feature maps"),
    ([nn.Conv2d(3, 4, 3), nn.Linear(6, 2)], "module 1 (1): Linear is not supported: a Linear reading feature maps"),
    ([nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d((3, 2)), nn.Flatten(), nn.Linear(24, 2)],
     "module 1 (1): AdaptiveAvgPool2d((3, 2)) is not supported"),
    ([nn.Conv2d(3, 4, 3), nn.ReLU()], "module 0 (0): Conv2d is not supported: the module must end with a Linear"),
])
def test_conv_orders_refused(mods, message):
    with pytest.raises(ConfigError) as info:
        GrowableNet.from_module(nn.Sequential(*mods), input_shape=(3, 8, 8))
    assert message in str(info.value)


def test_conv_module_needs_an_input_shape():
    with pytest.raises(ConfigError, match="input_shape"):
        GrowableNet.from_module(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2)))


def test_max_pool_before_monotone_activation_and_adaptive_pooling_accepted():
    torch.manual_seed(3)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.Sigmoid(),
                           nn.Conv2d(4, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3),
                           nn.Linear(4, 2)).eval()
    net = GrowableNet.from_module(module, input_shape=(3, 8, 8))
    assert net.layers["h2"].pool == "avg" and net.layers["h2"].pool_size == 4
    assert net.layers["h2"].dropout == 0.3
    x = torch.randn(3, 3, 8, 8)
    torch.testing.assert_close(net(x), module(x), **TOL)


# ---------------------------------------------------------------------------------------- grow your own CNN
def test_grow_converted_cnn_with_own_optimizer():
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    net = GrowableNet.from_module(module, input_shape=(3, 8, 8))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 3, (16,))

    def step():
        net.train()
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    step()
    grown = [("add_channels", lambda: ops.add_channels(net, "h1", 2, optimizer=optimizer)),
             ("split_channels", lambda: ops.split_channels(net, "h2", [0, 3], optimizer=optimizer)),
             ("add_units", lambda: ops.add_units(net, "h3", 3, optimizer=optimizer)),   # dense batch norm
             ("split_units", lambda: ops.split_units(net, "h3", [1], optimizer=optimizer)),
             ("remove_units", lambda: ops.remove_units(net, "h3", [8], optimizer=optimizer))]
    for kind, grow in grown:
        before = copy.deepcopy(net)
        event = grow()
        assert event.kind == kind
        torch.testing.assert_close(net.eval()(x), before.eval()(x), **TOL)
        outs = []
        for m in (net, before):
            torch.manual_seed(5)
            outs.append(m.train()(x))  # exact in training mode too (batch norm, running statistics)
        torch.testing.assert_close(outs[0], outs[1], **TOL)
        for name in ("h1", "h2", "h3"):  # the original units' statistics move as before
            old, new = before.layers[name].norm, net.layers[name].norm
            n = min(old.num_features, new.num_features, 8)
            torch.testing.assert_close(new.running_mean[:n], old.running_mean[:n])
            torch.testing.assert_close(new.running_var[:n], old.running_var[:n])
    assert net.widths() == [3, 6, 8, 11, 3]
    norm = net.layers["h3"].norm
    assert norm.weight.shape == (11,) and norm.running_var.shape == (11,) and norm.num_features == 11
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in net.parameters()} <= in_optimizer
    losses = [step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    exported = net.export().eval()
    torch.testing.assert_close(exported(x), net.eval()(x), **TOL)
    assert isinstance(exported, nn.Sequential) and exported[10].num_features == 11


# ---------------------------------------------------------------------------------------- dense batch norm in the graph
def test_dense_layer_batch_norm_modulator_dropout_spec_counts_export():
    from selfexpand.graph import GateModulator, Layer

    torch.manual_seed(2)
    net = GrowableNet.mlp([3, 5, 2], seed=0)
    net.layers["h1"] = Layer(5, "tanh", modulator=GateModulator(5), batch_norm=True, momentum=0.2, dropout=0.5)
    net.invalidate()
    _randomize_norm(net.layers["h1"].norm, torch.Generator().manual_seed(1))
    with torch.no_grad():
        net.layers["h1"].modulator.gate[1] = -1.0  # unit 1 off: the export drops it and its batch norm entry
    counts = net.counts()
    assert counts["stored_params"] == 3 * 5 + 5 + 5 * 2 + 2 + 2 * 5
    assert counts["params"] == 3 * 4 + 4 + 4 * 2 + 2 + 2 * 4
    spec = net.spec()["layers"]["h1"]
    assert spec["norm"]["momentum"] == 0.2 and spec["dropout"] == 0.5 and spec["modulator"] == {"type": "gate"}
    again = GrowableNet.from_spec(net.spec(), net.state_dict())
    x = torch.randn(6, 3)
    exported = net.export()
    norms = _norms(exported)
    assert len(norms) == 1 and norms[0].num_features == 4
    for m in (net, again, exported):
        m.eval()
    torch.testing.assert_close(again(x), net(x))
    torch.testing.assert_close(exported(x), net(x), **TOL)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in exported.modules())
