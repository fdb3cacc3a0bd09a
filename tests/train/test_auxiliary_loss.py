"""The trainer adds the modules' auxiliary losses (the size losses) to the objective, records the
task loss alone, and ``gd`` is plain gradient descent."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from selfexpand.data import load_dataset
from selfexpand.graph.size_nets import controller_mask_net, size_weight_net
from selfexpand.presets import build_method, resolve_config
from selfexpand.train.recorders import SizeControlRecorder
from selfexpand.train.trainer import Trainer, make_optimizer


def _double(data):
    return dataclasses.replace(data, **{k: getattr(data, k).double() for k in ("x_train", "y_train", "x_val",
                                                                               "y_val", "x_test", "y_test")})


def test_size_loss_moves_n_from_zero_by_exactly_one_gradient_step():
    # at N = 0 every unit is off and theta'(0) = 0: only lambda (N - N_inf)^2 has a gradient
    data = _double(load_dataset("bessel"))
    net = size_weight_net(1, 1, n_start=0.0, size_lambda=0.1, n_inf=5.0).double()
    Trainer(build_method("size-weight", resolve_config("size-weight", "bessel")), epochs=1,
            batch_size=1 << 20, lr=1e-3, optimizer="gd").fit(net, data)
    assert float(net.layers["h1"].modulator.size.detach()) == pytest.approx(1e-3 * 2 * 0.1 * 5.0, rel=1e-12)


def test_recorded_train_loss_is_the_task_loss_and_size_is_recorded():
    data = _double(load_dataset("bessel"))
    net = size_weight_net(1, 1, n_start=2.5, size_lambda=10.0).double()
    with torch.no_grad():
        task = float(torch.nn.functional.mse_loss(net(data.x_train), data.y_train))
    trainer = Trainer(build_method("size-weight", resolve_config("size-weight", "bessel")), epochs=2,
                      batch_size=1 << 20, lr=1e-4, optimizer="gd", callbacks=[SizeControlRecorder()])
    history = trainer.fit(net, data).history.epochs()
    assert history[0]["train_loss"] == pytest.approx(task, rel=1e-6)  # the size loss (22.5) is not in it
    assert history[-1]["size_control"]["h1"] == pytest.approx(float(net.layers["h1"].modulator.size.detach()))
    assert history[-1]["live_units"]["h1"] == 3
    assert history[-1]["control_params"] == 1


def test_controller_reaches_the_optimizer_and_grows():
    data = load_dataset("spirals", options={"points": 20})
    net = controller_mask_net(2, 3, c_start=1e-5)
    Trainer(build_method("controller-mask", resolve_config("controller-mask", "spirals")), epochs=200,
            batch_size=1 << 20, lr=1e-2, optimizer="adam").fit(net, data)
    assert net.layers["h1"].modulator.live_count() > 0
    assert net.counts()["params"] > 3


def test_gd_is_sgd_without_momentum():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = make_optimizer("gd", [p], lr=0.1)
    assert opt.param_groups[0]["momentum"] == 0
    for _ in range(2):
        opt.zero_grad()
        (p ** 2).sum().backward()
        opt.step()
    assert float(p.detach()) == pytest.approx(0.8 * 0.8)
