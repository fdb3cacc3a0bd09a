"""``NaturalGradient``: its step is ``-lr (J^T H J + damping I)^-1 g`` with ``H`` the Hessian of the
batch-mean loss with respect to the outputs, solved matrix-free by CG; it follows parameters added by
growth, skips frozen ones, and trains through the library's ``Trainer``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfexpand.errors import ConfigError
from selfexpand.graph.network import GrowableNet
from selfexpand.ops import add_units
from selfexpand.train.natural_gradient import NaturalGradient
from selfexpand.train.trainer import Trainer, make_optimizer

from edgekit import digits, toy_dataset

LOSSES = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}


def _problem(loss: str, seed: int = 0, n: int = 7):
    """A 3-5-4 tanh MLP (float64) and a batch: class labels or regression targets."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4)).double()
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (n,), generator=g) if loss == "cross_entropy" else \
        torch.randn(n, 4, generator=g, dtype=torch.float64)
    return net, x, y


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params]).clone()


def _explicit_step(net, x, y, loss: str, *, lr: float, damping: float, weight_decay: float) -> torch.Tensor:
    """``-lr x`` with ``(J^T H J + damping I) x = g + weight_decay theta`` formed and solved densely."""
    params = list(net.parameters())
    names = [name for name, _ in net.named_parameters()]

    def outputs(*values):
        return torch.func.functional_call(net, dict(zip(names, values)), (x,))

    values = tuple(p.detach() for p in params)
    out = outputs(*values)
    jac = torch.autograd.functional.jacobian(outputs, values)
    J = torch.cat([j.reshape(out.numel(), -1) for j in jac], 1)  # (N * C, P), rows example-major
    if loss == "cross_entropy":
        probs = torch.softmax(out, 1)
        H = torch.block_diag(*[torch.diag(p) - torch.outer(p, p) for p in probs]) / out.shape[0]
    else:
        H = 2.0 * torch.eye(out.numel(), dtype=out.dtype) / out.numel()
    g = torch.func.grad(lambda *v: LOSSES[loss](outputs(*v), y), argnums=tuple(range(len(values))))(*values)
    g = torch.cat([t.reshape(-1) for t in g]) + weight_decay * _flat(params)
    A = J.T @ H @ J + damping * torch.eye(J.shape[1], dtype=J.dtype)
    return -lr * torch.linalg.solve(A, g)


def _step(opt, net, x, y, loss: str) -> None:
    opt.zero_grad(set_to_none=True)
    out = net(x)
    LOSSES[loss](out, y).backward(retain_graph=True)
    opt.set_outputs(out)
    opt.step()


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("lr, damping, weight_decay", [(0.1, 0.1, 0.0), (0.5, 1e-3, 1e-2)])
def test_step_is_the_damped_gauss_newton_solution(loss, lr, damping, weight_decay):
    net, x, y = _problem(loss)
    expected = _explicit_step(net, x, y, loss, lr=lr, damping=damping, weight_decay=weight_decay)
    before = _flat(net.parameters())
    opt = NaturalGradient(net.parameters(), lr=lr, damping=damping, max_iter=500, weight_decay=weight_decay,
                          loss=loss)
    _step(opt, net, x, y, loss)
    step = _flat(net.parameters()) - before
    assert torch.linalg.norm(step - expected) <= 1e-6 * torch.linalg.norm(expected)
    assert opt.last_info["converged"] and opt.last_info["residual"] <= 1e-10
    assert 1 <= opt.last_info["iterations"] <= 500 and opt.last_info["parameters"] == 4


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_one_cg_iteration_is_not_the_solution(loss):
    net, x, y = _problem(loss)
    expected = _explicit_step(net, x, y, loss, lr=0.1, damping=1e-3, weight_decay=0.0)
    before = _flat(net.parameters())
    opt = NaturalGradient(net.parameters(), lr=0.1, damping=1e-3, max_iter=1, loss=loss)
    _step(opt, net, x, y, loss)
    assert opt.last_info["iterations"] == 1 and not opt.last_info["converged"]
    assert torch.linalg.norm(_flat(net.parameters()) - before - expected) > 1e-3 * torch.linalg.norm(expected)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_natural_gradient_beats_gradient_descent_at_the_same_lr(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 2, generator=g, dtype=torch.float64)
    y = torch.sin(2 * x[:, :1]) * torch.cos(x[:, 1:])
    torch.manual_seed(seed)
    start = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    final = {}
    for name in ("natural", "gd"):
        net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1)).double()
        net.load_state_dict(start.state_dict())
        opt = NaturalGradient(net.parameters(), lr=0.1, loss="mse") if name == "natural" else \
            torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(20):
            _step(opt, net, x, y, "mse") if name == "natural" else _sgd_step(opt, net, x, y)
        with torch.no_grad():
            final[name] = float(F.mse_loss(net(x), y))
    with torch.no_grad():
        initial = float(F.mse_loss(start(x), y))
    assert final["natural"] < final["gd"] < initial
    assert initial - final["natural"] > 1.1 * (initial - final["gd"])  # 1.2x to 2.2x on seeds 0-4


def _sgd_step(opt, net, x, y) -> None:
    opt.zero_grad()
    F.mse_loss(net(x), y).backward()
    opt.step()


def test_parameters_added_after_construction_are_updated():
    net, x, y = _problem("mse")
    extra = nn.Parameter(torch.ones(4, dtype=torch.float64))  # e.g. a growth op appending to group 0
    late = nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = NaturalGradient(net.parameters(), loss="mse")
    opt.param_groups[0]["params"].append(extra)
    opt.add_param_group({"params": [late], "lr": 0.5})
    opt.zero_grad()
    out = net(x) * extra + late
    F.mse_loss(out, y).backward(retain_graph=True)
    opt.set_outputs(out)
    opt.step()
    assert not torch.equal(extra.detach(), torch.ones(4, dtype=torch.float64))
    assert not torch.equal(late.detach(), torch.zeros(4, dtype=torch.float64))
    assert opt.last_info["parameters"] == 6 and not opt.state


def test_growth_op_then_step():
    net = GrowableNet.mlp([3, 4, 2], activation="tanh", seed=0).double()
    x = torch.randn(9, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1] * 4 + [0])
    opt = NaturalGradient(net.parameters())
    _step(opt, net, x, y, "cross_entropy")
    layer = net.hidden_layers()[0]
    ins = {c: torch.randn(2, net.connections[c].shape[1], dtype=torch.float64)
           for c in net.connection_names(target=layer)}
    outs = {c: torch.zeros(net.connections[c].shape[0], 2, dtype=torch.float64)
            for c in net.connection_names(source=layer)}
    add_units(net, layer, 2, incoming=ins, outgoing=outs, optimizer=opt)
    tracked = {id(p) for group in opt.param_groups for p in group["params"]}
    assert all(id(p) in tracked for p in net.parameters())
    (conn,) = net.connection_names(source=layer)
    before = net.connections[conn].weight.detach().clone()
    _step(opt, net, x, y, "cross_entropy")
    assert net.connections[conn].weight.shape == (2, 6)
    assert (net.connections[conn].weight.detach()[:, 4:] != before[:, 4:]).any()  # new columns moved


def test_frozen_and_gradient_free_parameters_are_untouched():
    net, x, y = _problem("cross_entropy")
    unused = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = NaturalGradient([*net.parameters(), unused], weight_decay=0.1)
    net[0].weight.requires_grad_(False)
    frozen = net[0].weight.detach().clone()
    _step(opt, net, x, y, "cross_entropy")
    assert torch.equal(net[0].weight.detach(), frozen)
    assert torch.equal(unused.detach(), torch.ones(3, dtype=torch.float64))  # no .grad: no weight decay
    assert opt.last_info["parameters"] == 3


def test_parameter_with_gradient_but_no_effect_on_outputs_takes_gradient_over_damping():
    # a term of the loss that is not a function of the outputs (an auxiliary loss): no curvature
    net, x, y = _problem("mse")
    side = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = NaturalGradient([*net.parameters(), side], lr=0.1, damping=0.1, loss="mse")
    out = net(x)
    (F.mse_loss(out, y) + (side ** 2).sum()).backward(retain_graph=True)
    opt.set_outputs(out)
    opt.step()
    assert float(side.detach()) == pytest.approx(2.0 - 0.1 * 4.0 / 0.1, rel=1e-8)


def test_zero_gradient_gives_a_zero_step_and_no_nan():
    net, x, _ = _problem("mse")
    with torch.no_grad():
        y = net(x)  # the outputs are the targets: g = 0
    before = _flat(net.parameters())
    opt = NaturalGradient(net.parameters(), loss="mse")
    _step(opt, net, x, y, "mse")
    assert torch.equal(_flat(net.parameters()), before)
    assert opt.last_info == {"iterations": 0, "residual": 0.0, "parameters": 4, "converged": True}


def test_step_without_outputs_raises_and_outputs_are_used_once():
    net, x, y = _problem("cross_entropy")
    opt = NaturalGradient(net.parameters())
    F.cross_entropy(net(x), y).backward()
    with pytest.raises(RuntimeError, match="set_outputs"):
        opt.step()
    opt.zero_grad()
    _step(opt, net, x, y, "cross_entropy")
    with pytest.raises(RuntimeError, match=r"retain_graph=True"):
        opt.step()  # the stored outputs were freed by the previous step
    with pytest.raises(ValueError, match="requires_grad"):
        opt.set_outputs(net(x).detach())


def test_closure_is_evaluated():
    net, x, y = _problem("mse")
    opt = NaturalGradient(net.parameters(), loss="mse")

    def closure():
        opt.zero_grad()
        out = net(x)
        loss = F.mse_loss(out, y)
        loss.backward(retain_graph=True)
        opt.set_outputs(out)
        return loss

    first = float(opt.step(closure).detach())
    assert float(opt.step(closure).detach()) < first


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0.0}, "lr must be"), ({"damping": 0.0}, "damping must be"), ({"damping": float("nan")}, "damping"),
    ({"max_iter": 0}, "max_iter must be"), ({"max_iter": 2.5}, "max_iter"), ({"tol": -1.0}, "tol must be"),
    ({"weight_decay": -1e-3}, "weight_decay must be"), ({"loss": "nll"}, "loss must be one of"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    net, _, _ = _problem("mse")
    with pytest.raises(ValueError, match=message):
        NaturalGradient(net.parameters(), **kwargs)


def test_groups_must_share_the_system_settings():
    net, x, y = _problem("mse")
    opt = NaturalGradient(net[0].parameters(), loss="mse")
    opt.add_param_group({"params": list(net[2].parameters()), "damping": 1.0})
    with pytest.raises(ValueError, match="damping must be the same"):
        _step(opt, net, x, y, "mse")


@pytest.mark.parametrize("task, loss", [("classification", "cross_entropy"), ("regression", "mse")])
def test_make_optimizer_picks_the_task_loss(task, loss):
    net, _, _ = _problem("mse")
    opt = make_optimizer("natural", net.parameters(), lr=0.1, weight_decay=1e-3, task=task)
    assert isinstance(opt, NaturalGradient)
    assert opt.defaults == dict(lr=0.1, damping=0.1, max_iter=100, tol=1e-10, weight_decay=1e-3, loss=loss)
    with pytest.raises(ConfigError, match="task must be one of"):
        make_optimizer("natural", net.parameters(), lr=0.1, task="ranking")


def test_trainer_with_natural_gradient_lowers_the_validation_loss_on_digits():
    data = digits()
    net = GrowableNet.mlp([64, 16, 10], seed=0)
    with torch.no_grad():
        initial = float(F.cross_entropy(net(data.x_val), data.y_val))
    result = Trainer(epochs=3, optimizer="natural", lr=0.1, batch_size=64).fit(net, data)
    assert isinstance(result.optimizer, NaturalGradient)
    losses = [record["val_loss"] for record in result.history.epochs()]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] < initial
    assert result.optimizer.last_info["iterations"] >= 1


def test_trainer_gives_a_regression_task_the_mse_curvature():
    data = toy_dataset(n=64, d=4, k=2, task="regression", signed=True)
    net = GrowableNet.mlp([4, 8, 2], activation="tanh", seed=0)
    result = Trainer(epochs=2, optimizer="natural", lr=0.1, batch_size=32).fit(net, data)
    assert result.optimizer.defaults["loss"] == "mse"
    losses = [record["train_loss"] for record in result.history.epochs()]
    assert losses[1] < losses[0]


@pytest.mark.parametrize("kwargs, name", [
    ({"lr": True}, "lr"), ({"lr": float("nan")}, "lr"), ({"damping": float("inf")}, "damping"),
    ({"tol": float("nan")}, "tol"), ({"max_iter": True}, "max_iter"), ({"loss": "nll"}, "loss"),
])
def test_bad_arguments_raise_config_error_naming_them(kwargs, name):
    net, _, _ = _problem("mse")
    with pytest.raises(ConfigError, match=f"^{name} must be .*, got {name}="):
        NaturalGradient(net.parameters(), **kwargs)


def test_usage_errors_about_outputs_and_groups_are_config_errors():
    net, x, y = _problem("mse")
    opt = NaturalGradient(net.parameters(), loss="mse")
    with pytest.raises(ConfigError, match="requires_grad"):
        opt.set_outputs(net(x).detach())
    opt = NaturalGradient(net[0].parameters(), loss="mse")
    opt.add_param_group({"params": list(net[2].parameters()), "tol": 1e-3})
    with pytest.raises(ConfigError, match="tol must be the same"):
        _step(opt, net, x, y, "mse")
