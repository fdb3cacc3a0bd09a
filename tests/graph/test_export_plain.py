"""``net.export()`` is plain PyTorch: for a chain, an edge-expanded DAG (split edges, eps edges, masks,
pruned and compacted edges, index subsets, a gated layer, a rational activation), a net with a conv
front, and a SENN net (rational layer inserted at identity, then bent; widened), the export

1. saved with ``torch.save`` loads with ``torch.load(weights_only=False)`` in a process where
   ``import selfexpand`` fails, and gives the same outputs (a planted non-plain module must fail there);
2. compiles with ``torch.jit.script``; 3. exports with ``torch.export.export`` (default, non-strict);
4. exports to ONNX with ``dynamo=True`` (its first strategy, no fallback) and runs in onnxruntime.

Every output is compared with the growable net's own (atol 1e-5). ONNX needs the ``onnx`` extra: without
it the ONNX tests skip, except under ``CI=true`` where they fail (as missing datasets do, tests/conftest.py).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import pytest
from extras import missing_extra
import torch
from torch import nn

from selfexpand import ops
from selfexpand.graph import (
    ExportedGraph,
    GateModulator,
    GrowableNet,
    RationalActivation,
    front_for,
)
from selfexpand.graph.conv import spatial_sizes
from selfexpand.graph.plain import foreign_modules, is_plain

TOL = dict(rtol=0.0, atol=1e-5)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def chain():
    net = GrowableNet.mlp([6, 8, 5, 3], "tanh", seed=0)
    net.layers["h1"].modulator = GateModulator(8)  # folded into the next weights; a dead unit dropped
    with torch.no_grad():
        net.layers["h1"].modulator.gate.copy_(torch.linspace(-1.0, 0.5, 8))
    net.invalidate()
    return net, torch.randn(16, 6, generator=_gen(0))


def edge_expanded():
    gen = _gen(1)
    net = GrowableNet.mlp([6, 8, 4], seed=1)
    # two edges into the output through a rational layer (eps edges around them), the direct ones masked
    ops.split_edges(net, [("h1_to_output", 0, 1), ("h1_to_output", 2, 5)], eps=1e-2,
                    activation="rational", generator=gen)
    net.layers["h2"].activation.set_coefficients(0.3, -0.2, 0.9)
    # a signed split of input edges: a layer reading a subset of the input (in_index)
    ops.split_edges(net, [("input_to_h1", 3, 0), ("input_to_h1", 4, 2)], eps=1e-2, signed=True, generator=gen)
    # a pruned edge (mask kept) and a fully pruned row, which compaction turns into an out_index
    ops.prune_edges(net, [("input_to_h1", 0, 5)] + [("h1_to_output", 3, c) for c in range(8)])
    ops.compact(net)
    net.layers["h1"].modulator = GateModulator(8)
    with torch.no_grad():
        net.layers["h1"].modulator.gate.copy_(torch.tensor([0.2, -1.0, 0.1, 0.0, 0.3, -0.5, 0.0, 0.4]))
    net.invalidate()
    conns = list(net.connections.values())
    for part in ("in_index", "out_index", "mask", "provisional"):  # every kind of storage is exported
        assert any(getattr(c, part) is not None for c in conns), part
    return net, torch.randn(16, 6, generator=_gen(1))


def with_front():
    front, spec = front_for("conv-small", [3, 8, 8], generator=_gen(2))
    net = GrowableNet.mlp([front.out_features, 6, 3], seed=2, front=front, front_spec=spec)
    with torch.no_grad():  # batch norm statistics away from their initial values
        for k in range(3):
            net(torch.randn(8, 3, 8, 8, generator=_gen(20 + k)) * 2 + 1)
    return net.eval(), torch.randn(16, 3, 8, 8, generator=_gen(2))


def senn():
    """As SENN grows: a rational layer inserted at identity (invertible basis), then trained (bent);
    the tanh start layer widened."""
    gen = _gen(3)
    net = GrowableNet.mlp([5, 4, 3], "tanh", seed=3)
    basis = torch.linalg.qr(torch.randn(4, 4, generator=gen))[0] * 2
    w_out = net.connections["h1_to_output"].weight.detach() @ torch.linalg.inv(basis)
    ops.insert_layer(net, "h1_to_output", 4, weight_in=basis, bias=torch.zeros(4), weight_out=w_out,
                     activation="rational")
    net.layers["h2"].activation.set_coefficients(0.4, 0.1, 0.8)
    ops.add_units(net, "h1", 2, generator=gen)
    return net, torch.randn(16, 5, generator=_gen(3))


def conv_chain():
    """A grown CNN (issue #24): channels added and split, batch-norm statistics moved from their start."""
    net = GrowableNet.cnn((3, 8, 8), [4, 5], [6], 3, seed=4)
    ops.add_channels(net, "h1", 2, generator=_gen(4))
    ops.split_channels(net, "h2", [0, 3])
    with torch.no_grad():
        for k in range(3):
            net(torch.randn(8, 3, 8, 8, generator=_gen(40 + k)) * 2 + 1)
    return net.eval(), torch.randn(16, 3, 8, 8, generator=_gen(4))


def conv_skip():
    """A conv graph with a 1x1 skip reading a channel subset and writing a subset, an avg-pooled layer,
    an identity conv layer inserted (signed), and a second flatten reader of an early layer."""
    gen = _gen(5)
    net = GrowableNet(2, 3, input_shape=(2, 6, 6))
    net.next_id = 3  # the names h1, h2 below are taken
    net.add_layer("h1", GrowableNet.cnn((2, 6, 6), [3], seed=5).layers["h1"], before="output")
    net.add_layer("h2", GrowableNet.cnn((2, 6, 6), [4], pool="avg", seed=5).layers["h1"], before="output")
    net.add_connection("input", "h1", torch.randn(3, 2, 3, 3, generator=gen), padding=1)
    net.add_connection("h1", "h2", torch.randn(4, 3, 3, 3, generator=gen), padding=1)
    net.add_connection("input", "h2", torch.randn(2, 1, 1, 1, generator=gen), in_index=torch.tensor([1]),
                       out_index=torch.tensor([0, 2]), stride=2)
    net.add_connection("h2", "output", torch.randn(3, 4 * 1, generator=gen))
    net.add_connection("h1", "output", torch.randn(3, 2 * 9, generator=gen), in_index=torch.tensor([0, 2]))
    spatial_sizes(net, strict=True)
    ops.insert_conv_layer(net, "h1_to_h2", activation="relu", batch_norm=True)
    with torch.no_grad():
        net(torch.randn(8, 2, 6, 6, generator=gen))  # batch-norm statistics move (training mode)
    return net.eval(), torch.randn(16, 2, 6, 6, generator=_gen(5))


CASES = {"chain": (chain, nn.Sequential), "edge-expanded": (edge_expanded, ExportedGraph),
         "front": (with_front, nn.Sequential), "senn": (senn, nn.Sequential),
         "conv-chain": (conv_chain, nn.Sequential), "conv-skip": (conv_skip, ExportedGraph)}


@pytest.fixture(scope="module")
def built():
    """case -> (net, x, exported in eval mode, the net's outputs)."""
    out = {}
    for name, (build, _) in CASES.items():
        net, x = build()
        net.eval()
        with torch.no_grad():
            out[name] = (net, x, net.export().eval(), net(x))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_export_is_plain_torch(built, case):
    net, x, exported, reference = built[case]
    assert isinstance(exported, CASES[case][1])
    assert is_plain(exported), foreign_modules(exported)
    for module in exported.modules():  # generated code of every traced part names torch only
        if isinstance(module, torch.fx.GraphModule):
            assert "selfexpand" not in module.code
    with torch.no_grad():
        torch.testing.assert_close(exported(x), reference, **TOL)
    if case == "front":  # the plain front takes flat inputs as the conv front does
        with torch.no_grad():
            torch.testing.assert_close(exported(x.flatten(1)), reference, **TOL)
    if case in ("edge-expanded", "senn"):
        assert any(n.endswith("coefficients") for n, _ in exported.named_parameters())


_LOADER = textwrap.dedent("""
    import sys
    sys.modules["selfexpand"] = None  # before anything is loaded: the package cannot be imported
    try:
        import selfexpand  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("selfexpand was importable")
    import torch
    folder = sys.argv[1]
    for name in sys.argv[2:]:
        try:
            model = torch.load(f"{folder}/{name}.pt", weights_only=False)
            x = torch.load(f"{folder}/{name}.x.pt")
            with torch.no_grad():
                torch.save(model(x), f"{folder}/{name}.out.pt")
        except Exception as exc:
            open(f"{folder}/{name}.err", "w").write(f"{type(exc).__name__}: {exc}")
    assert not [m for m in sys.modules if m.startswith("selfexpand.")]
""")


@pytest.fixture(scope="module")
def loaded_elsewhere(built, tmp_path_factory):
    """Every case's export (and a planted module holding a selfexpand class) saved with torch.save and
    run in one fresh process without selfexpand; returns the folder of its outputs."""
    folder = tmp_path_factory.mktemp("plain")
    names = list(built) + ["planted"]
    for name, (_, x, exported, _) in built.items():
        torch.save(exported, folder / f"{name}.pt")
        torch.save(x, folder / f"{name}.x.pt")
    torch.save(nn.Sequential(nn.Linear(3, 2), RationalActivation(0.1, 0.2, 0.9)), folder / "planted.pt")
    torch.save(torch.randn(4, 3), folder / "planted.x.pt")
    run = subprocess.run([sys.executable, "-c", _LOADER, str(folder), *names], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert run.returncode == 0, run.stderr
    return folder


@pytest.mark.parametrize("case", list(CASES))
def test_torch_save_loads_without_selfexpand(built, loaded_elsewhere, case):
    error = loaded_elsewhere / f"{case}.err"
    assert not error.exists(), error.read_text()
    torch.testing.assert_close(torch.load(loaded_elsewhere / f"{case}.out.pt"), built[case][3], **TOL)


def test_the_loader_catches_a_module_that_needs_selfexpand(loaded_elsewhere):
    error = loaded_elsewhere / "planted.err"
    assert error.exists() and "selfexpand" in error.read_text()


@pytest.mark.parametrize("case", list(CASES))
def test_torchscript(built, case):
    _, x, exported, reference = built[case]
    scripted = torch.jit.script(exported)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), reference, **TOL)


@pytest.mark.parametrize("case", list(CASES))
def test_torch_export_default(built, case):
    _, x, exported, reference = built[case]
    program = torch.export.export(exported, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), reference, **TOL)


def test_torch_export_with_a_dynamic_batch(built):
    """Both export kinds name their argument ``input`` (nn.Sequential's), so one dynamic_shapes fits both."""
    net, x, exported, _ = built["edge-expanded"]
    program = torch.export.export(exported, (x,), dynamic_shapes={"input": {0: torch.export.Dim("batch")}})
    longer = torch.cat([x, x[:5]])
    with torch.no_grad():
        torch.testing.assert_close(program.module()(longer), net(longer), **TOL)


@pytest.fixture(scope="module")
def onnxruntime():
    """onnxruntime, once onnx and onnxscript import too; skips without them (fails under CI=true)."""
    try:
        for name in ("onnx", "onnxscript"):
            importlib.import_module(name)
        return importlib.import_module("onnxruntime")
    except ImportError as exc:
        missing_extra(f"ONNX export needs the onnx extra (pip install -e '.[onnx]'): {exc}")


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_dynamo_in_onnxruntime(built, case, onnxruntime, tmp_path, capsys):
    _, x, exported, reference = built[case]
    path = tmp_path / f"{case}.onnx"
    torch.onnx.export(exported, (x,), str(path), dynamo=True)
    log = capsys.readouterr().out  # the exporter reports each strategy it tries, ✅ or ❌
    assert "strict=False)`... ✅" in log and "❌" not in log, f"the ONNX exporter fell back:\n{log}"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(result), reference, **TOL)


class _Swish(nn.Module):
    """A user's activation: not a torch class, so the export traces it."""

    def forward(self, x):
        return x * torch.sigmoid(x)


class _Branchy(nn.Module):
    """A user's activation that branches on a tensor value: it cannot be traced, so it is kept as is."""

    def forward(self, x):
        return x if bool((x > 0).all()) else torch.relu(x)


def test_a_user_activation_is_traced_else_kept():
    net = GrowableNet.mlp([3, 4, 4, 2], seed=0)
    net.layers["h1"].activation, net.layers["h2"].activation = _Swish(), _Branchy()
    net.invalidate()
    exported = net.export()
    assert foreign_modules(exported) == ["4"]  # the Swish became a GraphModule, the branchy one stayed
    x = torch.randn(8, 3)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), **TOL)
