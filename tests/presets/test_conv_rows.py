"""Conv starts as a setting (issue #24): ``conv`` beside ``hidden``, the cifar10 rows of every method that
grows channels, and the methods that cannot grow conv layers refusing a conv start."""

from __future__ import annotations

import pytest
import torch

from selfexpand.data.base import Dataset
from selfexpand.errors import ConfigError
from selfexpand.graph import GrowableNet
from selfexpand.graph.conv import ConvLayer
from selfexpand.presets import build_start, resolve_config

CONV_METHODS = ("random", "zero", "net2net", "gradmax", "firefly")  # the baselines' cifar10 row
SVOD_METHODS = ("swe", "svod-random", "svod-zero")


def _images(shape=(784,), raw=(28, 28)):
    n = 4
    x = torch.rand(n, *shape)
    y = torch.zeros(n, dtype=torch.long)
    prep = {"input_shape": list(shape)} | ({"raw_shape": list(raw)} if raw else {})
    return Dataset("img", "classification", x, y, x, y, x, y, shape, 10, prep)


@pytest.mark.parametrize("method", CONV_METHODS)
def test_the_cifar10_row_is_the_quarter_vgg_start(method):
    config = resolve_config(method, "cifar10")
    assert config["conv"] == [4, 8, 16] and config["max_channels"] == [16, 32, 64]
    assert config["channel_fraction"] == 0.25 and config["hidden"] == [] and config["max_params"] is None
    if method == "gradmax":  # at epsilon 0 a new channel behind batch norm and ReLU would never train
        assert config["epsilon"] == 1e-3 == resolve_config(method, "mnist")["epsilon"]


@pytest.mark.parametrize("method", SVOD_METHODS)
def test_svod_cifar10_rows_share_the_start_and_caps_over_three_rounds(method):
    config = resolve_config(method, "cifar10")
    assert config["conv"] == [4, 8, 16] and config["max_channels"] == [16, 32, 64] and config["hidden"] == []
    assert config["rounds"] == 4 and sum(config["schedule"][:3]) == (16 + 32 + 64) - (4 + 8 + 16)


def test_the_senn_cifar10_row_starts_at_the_quarter_vgg_with_its_capacity():
    config = resolve_config("senn", "cifar10")
    assert config["conv"] == [4, 8, 16] and config["hidden"] == []
    assert [c - 1 for c in config["capacity"]] == [16, 32, 64]  # capacity[j] - 1 channels at most
    assert config["conv_pairs"] > 0 and resolve_config("senn", "mnist")["conv"] == []


@pytest.mark.parametrize("method", [*CONV_METHODS, *SVOD_METHODS, "senn", "edge", "static"])
def test_other_rows_keep_a_dense_start(method):
    for dataset in ("mnist", "fashion-mnist", "digits", "spirals", "x.csv"):
        assert resolve_config(method, dataset)["conv"] == []
    if method in ("edge", "static"):
        assert resolve_config(method, "cifar10")["conv"] == []


_REFUSING = ["edge", "edge-reference"]  # swe, svod-random, svod-zero grow channels (test_swe_conv)


@pytest.mark.parametrize("method", _REFUSING)
def test_methods_without_conv_growth_refuse_a_conv_start(method):
    with pytest.raises(ConfigError, match="cannot grow a conv start yet"):
        resolve_config(method, "mnist", {"conv": [4]})


def test_senn_starts_from_tanh_conv_blocks_with_zero_output_weights():
    config = resolve_config("senn", "mnist", {"conv": [4], "hidden": []})
    net = build_start("senn", config, _images(), seed=0)
    assert isinstance(net.layers["h1"], ConvLayer) and net.layers["h1"].size == 4
    assert type(net.layers["h1"].activation).__name__ == "Tanh"
    assert all(float(c.weight.abs().sum()) == 0 for c in net.incoming(net.output_name))
    flat = Dataset("flat", "classification", *([torch.rand(4, 2), torch.zeros(4, dtype=torch.long)] * 3), (2,), 2,
                   {"input_shape": [2]})
    with pytest.raises(ConfigError, match="image shape"):
        build_start("senn", resolve_config("senn", "moons", {"conv": [4]}), flat, seed=0)


def test_a_swapped_dense_only_part_is_refused_with_its_name():
    with pytest.raises(ConfigError, match="initializer 'net2net-deeper'"):
        resolve_config("random", "mnist", {"conv": [4], "initializer": "net2net-deeper"})


def test_conv_empty_builds_the_same_dense_network():
    data = _images()
    for method in ("random", "edge", "static"):
        config = resolve_config(method, "mnist")
        net = build_start(method, config, data, seed=3)
        ref = GrowableNet.mlp([784, *config["hidden"], 10], seed=3)
        assert net.spec() == ref.spec()
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))


def test_a_conv_start_follows_cnn_conventions_on_flat_mnist_rows():
    config = resolve_config("zero", "mnist", {"conv": [4, 8], "hidden": [6]})
    net = build_start("zero", config, _images(), seed=0)
    ref = GrowableNet.cnn((1, 28, 28), [4, 8], [6], 10, seed=0)
    assert net.spec() == ref.spec() and net.input_shape == (1, 28, 28)
    convs = [n for n in net.order if isinstance(net.layers[n], ConvLayer)]
    assert [net.layers[n].size for n in convs] == [4, 8]
    assert all(net.layers[n].norm is not None and net.layers[n].pool == "max" for n in convs)


def test_a_conv_start_needs_images_and_no_front():
    config = resolve_config("random", "x.csv", {"conv": [4]})
    with pytest.raises(ConfigError, match="no image shape"):
        build_start("random", config, _images(shape=(5,), raw=None), seed=0)
    with pytest.raises(ConfigError, match="fixed front"):
        build_start("random", config, _images(), seed=0, front="conv-small")
