"""Memory estimates before allocation: a start network that cannot fit is refused with its size, the
memory available and the setting that makes it smaller. Nothing big is ever allocated here: the
available memory is patched, and the estimates are checked against planted counts."""

from __future__ import annotations

import pytest
import torch

from selfexpand import estimate
from selfexpand.errors import ConfigError, ResourceError
from selfexpand.estimate import available_memory, check_fits, check_start_fits, format_bytes, start_bytes
from selfexpand.presets import resolve_config

GB = 10 ** 9


@pytest.fixture
def memory(monkeypatch):
    """Set the available memory (bytes) that every check sees."""
    def set_to(n):
        monkeypatch.setattr(estimate, "available_memory", lambda device="cpu": n)
    return set_to


def test_start_bytes_counts_weights_gradients_adam_state_and_a_batch():
    settings = {"hidden": [8], "optimizer": "adam", "batch_size": 32}
    need = start_bytes(settings, 64, 10)
    params = 65 * 8 + 9 * 10
    assert need["params"] == params
    assert need["activation_bytes"] == 32 * (64 + 8 + 10) * 4 * 4
    assert need["bytes"] == params * 4 * 4 + need["activation_bytes"]  # weight, gradient, two moments
    gd = start_bytes({**settings, "optimizer": "gd"}, 64, 10)
    assert gd["bytes"] - gd["activation_bytes"] == params * 2 * 4  # no optimizer state
    # a batch is never larger than the training set
    assert start_bytes(settings, 64, 10, n_train=5)["activation_bytes"] == 5 * 82 * 16


def test_huge_hidden_is_refused_with_size_memory_and_setting(memory):
    memory(23.1 * GB)
    settings = resolve_config("edge", "digits", {"hidden": [60000, 60000]})
    with pytest.raises(ResourceError) as err:
        check_start_fits(settings, 64, 10)
    message = str(err.value)
    assert message.startswith("the start network needs 57.7 GB (hidden=[60000, 60000]: 3.6e9 params")
    assert "23.1 GB available" in message and "use smaller `hidden`" in message and "Adam" in message
    assert err.value.exit_code == 2 and isinstance(err.value, ConfigError)


def test_a_network_that_fits_passes_and_the_margin_holds(memory):
    settings = {"hidden": [8], "optimizer": "adam", "batch_size": 32}
    need = start_bytes(settings, 64, 10)["bytes"]
    memory(need / estimate.FIT_FRACTION + 1)
    check_start_fits(settings, 64, 10)  # fits
    memory(need / estimate.FIT_FRACTION - 1)
    with pytest.raises(ResourceError):
        check_start_fits(settings, 64, 10)


def test_size_methods_name_n_max_and_a_large_batch_names_batch_size(memory):
    memory(1 * GB)
    settings = resolve_config("size-weight", "bessel", {"n_max": 10 ** 8})
    with pytest.raises(ResourceError, match=r"n_max=100000000.*use smaller `n_max`"):
        check_start_fits(settings, 1, 1, n_train=1)
    wide_batch = {"hidden": [1000], "optimizer": "adam", "batch_size": 10 ** 6}
    with pytest.raises(ResourceError, match="smaller `batch_size`"):
        check_start_fits(wide_batch, 1000, 10)
    check_start_fits(wide_batch, 1000, 10, n_train=1000)  # the batch is the training set: small


def test_check_fits_general_and_unknown_memory(memory):
    memory(2 * GB)
    with pytest.raises(ResourceError, match=r"^the thing needs 3 GB \(why\); this machine has 2 GB available: "
                                            r"use less$"):
        check_fits(3 * GB, what="the thing", smaller="use less", detail="why")
    check_fits(1 * GB, what="the thing", smaller="use less")
    memory(None)  # cannot be told: not checked
    check_fits(10 ** 15, what="the thing", smaller="use less")


def test_available_memory_reads_the_machine_and_cuda(monkeypatch):
    free = available_memory()
    assert free is None or free > 10 ** 6
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (123, 456))
    assert available_memory("cuda") == 123 and available_memory("cuda:0") == 123
    with pytest.raises(ResourceError, match="device cuda has 123 bytes available"):
        check_fits(10 ** 6, what="it", smaller="less", device="cuda")


def test_available_memory_takes_the_smaller_of_meminfo_and_cgroup(monkeypatch):
    monkeypatch.setattr(estimate, "_meminfo_available", lambda: 8 * GB)
    monkeypatch.setattr(estimate, "_cgroup_available", lambda: 2 * GB)
    assert available_memory() == 2 * GB
    monkeypatch.setattr(estimate, "_cgroup_available", lambda: None)
    assert available_memory() == 8 * GB


def test_format_bytes():
    assert format_bytes(57.7e9) == "57.7 GB" and format_bytes(512e6) == "512 MB" and format_bytes(999) == "999 bytes"
    assert format_bytes(2.5e12) == "2.5 TB" and format_bytes(250e12) == "250 TB" and format_bytes(1500) == "1.5 KB"
