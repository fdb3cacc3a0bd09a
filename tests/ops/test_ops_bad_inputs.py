"""Every op validates before it changes anything (DESIGN.md, "Growth operations"): a bad input raises
GrowthError or ConfigError whose message states the rule and echoes the value, and the model (state
dict, spec, parameter objects) and the optimizer (state, param groups) are exactly as before."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from selfexpand import ops
from selfexpand.errors import ConfigError, GrowthError
from selfexpand.graph import GrowableNet

NAN = float("nan")


def build():
    """A graph with a hidden layer ``h1``, a masked edge (input_to_h1 [1, 1]) and a split layer ``h2``
    (reading h1 unit 0, into the output), plus an Adam optimizer after two real steps."""
    net = GrowableNet.mlp([4, 5, 3], seed=0)
    ops.split_edges(net, [("h1_to_output", 0, 0)], eps=0.0)
    ops.prune_edges(net, [("input_to_h1", 1, 1)])
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    x = torch.rand(8, 4, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        optimizer.step()
    return net, optimizer


def add(layer="h1", n=1, incoming=None, outgoing=None, bias=None):
    size = n if type(n) is int and n > 0 else 1  # shapes stay valid while n itself is bad
    inc = {"input_to_h1": torch.ones(size, 4)} if incoming is None else incoming
    out = {"h1_to_output": torch.zeros(3, size)} if outgoing is None else outgoing
    return lambda net, opt: ops.add_units(net, layer, n, incoming=inc, outgoing=out, bias=bias,
                                          optimizer=opt)


def split(edges, **kw):
    return lambda net, opt: ops.split_edges(net, edges, optimizer=opt, **kw)


def prune(edges):
    return lambda net, opt: ops.prune_edges(net, edges, optimizer=opt)


def remove(layer, units):
    return lambda net, opt: ops.remove_units(net, layer, units, optimizer=opt)


def identity(connection, **kw):
    return lambda net, opt: ops.insert_identity_layer(net, connection, optimizer=opt, **kw)


def copy_units(layer="h1", sources=(0,), **kw):
    return lambda net, opt: ops.split_units(net, layer, list(sources), optimizer=opt, **kw)


def donate(layer="h1", n_new=1, **kw):
    from selfexpand.ops.donations import attach_donations

    return lambda net, opt: attach_donations(net, layer, n_new, optimizer=opt, **kw)


def insert(size, w_in_shape=(2, 4), b_shape=(2,), w_out_shape=(5, 2), fill=0.5, activation="relu"):
    def run(net, opt):
        return ops.insert_layer(net, "input_to_h1", size, weight_in=torch.full(w_in_shape, fill),
                                bias=torch.zeros(b_shape), weight_out=torch.full(w_out_shape, fill),
                                activation=activation, optimizer=opt)
    return run


# (id, op, error class, substrings the message must contain: the rule and the echoed value)
BAD = [
    ("add: unknown layer", add(layer="nope"), GrowthError, ["layer must be one of", "'nope'"]),
    ("add: input layer", add(layer="input"), GrowthError, ["hidden layer", "'input'"]),
    ("add: output layer", add(layer="output"), GrowthError, ["hidden layer", "'output'"]),
    ("add: n = 0", add(n=0), ConfigError, ["positive integer", "n=0"]),
    ("add: n = -2", add(n=-2), ConfigError, ["positive integer", "n=-2"]),
    ("add: n = True", add(n=True), ConfigError, ["positive integer", "n=True"]),
    ("add: wrong incoming shape", add(incoming={"input_to_h1": torch.ones(1, 3)}), ConfigError,
     ["must have shape (1, 4)", "shape=(1, 3)"]),
    ("add: incoming not a tensor", add(incoming={"input_to_h1": [[1.0] * 4]}), ConfigError,
     ["must be a tensor", "list"]),
    ("add: missing outgoing connection", add(outgoing={}), GrowthError,
     ["outgoing must give values for exactly the connections ['h1_to_output']", "got []"]),
    ("add: extra incoming connection", add(incoming={"input_to_h1": torch.ones(1, 4),
                                                     "bogus": torch.ones(1, 4)}), GrowthError,
     ["incoming must give values for exactly", "'bogus'"]),
    ("add: NaN incoming", add(incoming={"input_to_h1": torch.tensor([[1.0, NAN, 0.0, 0.0]])}),
     ConfigError, ["must be finite", "1 non-finite"]),
    ("add: inf outgoing", add(outgoing={"h1_to_output": torch.tensor([[0.0], [math.inf], [0.0]])}),
     ConfigError,
     ["must be finite", "1 non-finite"]),
    ("add: NaN bias", add(bias=torch.tensor([NAN])), ConfigError, ["bias must be finite"]),
    ("add: wrong bias shape", add(bias=torch.zeros(2)), ConfigError, ["bias must have shape (1,)",
                                                                      "shape=(2,)"]),
    ("remove: unit out of range", remove("h1", [5]), GrowthError, ["must be in [0, 5)", "units=[5]"]),
    ("remove: negative unit", remove("h1", [-1]), GrowthError, ["must be in [0, 5)", "units=[-1]"]),
    ("remove: all units", remove("h1", [0, 1, 2, 3, 4]), GrowthError, ["would leave layer 'h1' empty",
                                                                       "units=[0, 1, 2, 3, 4]"]),
    ("remove: repeated unit", remove("h1", [2, 2]), GrowthError, ["must not repeat", "units=[2, 2]"]),
    ("remove: no unit", remove("h1", []), GrowthError, ["at least one unit", "units=[]"]),
    ("remove: output layer", remove("output", [0]), GrowthError, ["hidden layer", "'output'"]),
    ("split: masked edge", split([("input_to_h1", 1, 1)], eps=0.0), GrowthError,
     ["must be live", "(1, 1)"]),
    ("split: two target layers", split([("input_to_h1", 0, 0), ("h1_to_output", 0, 1)], eps=0.0),
     GrowthError, ["must all enter one layer", "'h1'", "'output'"]),
    ("split: repeated edge", split([("h1_to_output", 1, 2), ("h1_to_output", 1, 2)], eps=0.0),
     GrowthError, ["must be distinct", "(1, 2)"]),
    ("split: negative eps", split([("h1_to_output", 1, 2)], eps=-1e-8), ConfigError,
     ["eps must be a number >= 0", "eps=-1e-08"]),
    ("split: NaN eps", split([("h1_to_output", 1, 2)], eps=NAN), ConfigError,
     ["eps must be a number >= 0", "eps=nan"]),
    ("split: signed not a bool", split([("h1_to_output", 1, 2)], signed="yes"), ConfigError,
     ["signed must be true or false", "signed='yes'"]),
    ("split: eps True", split([("h1_to_output", 1, 2)], eps=True), ConfigError, ["eps must be a number >= 0",
                                                                                  "eps=True"]),
    ("split_units: negative noise", copy_units(noise=-0.1), ConfigError,
     ["noise must be a number >= 0", "noise=-0.1"]),
    ("split_units: NaN noise", copy_units(noise=NAN), ConfigError, ["noise must be a number >= 0", "noise=nan"]),
    ("donations: negative std", donate(std=-1e-4), ConfigError, ["std must be a number >= 0", "std=-0.0001"]),
    ("donations: n_new True", donate(n_new=True), ConfigError, ["n_new must be a positive integer", "n_new=True"]),
    ("donations: max_entries 0", donate(max_entries=0), ConfigError,
     ["max_entries must be a positive integer", "max_entries=0"]),
    ("donations: lr_scale 0", donate(lr_scale=0.0), ConfigError,
     ["lr_scale must be a number > 0 or null", "lr_scale=0.0"]),
    ("split: unknown connection", split([("nope", 0, 0)]), GrowthError,
     ["connection must be one of", "'nope'"]),
    ("split: row out of range", split([("h1_to_output", 3, 0)]), GrowthError,
     ["must lie in its shape (3, 5)", "rows 3..3"]),
    ("split: no edges", split([]), GrowthError, ["at least one edge", "none"]),
    ("split: malformed edge", split([("h1_to_output", 1)]), ConfigError,
     ["(connection, row, col)", "('h1_to_output', 1)"]),
    ("split: rows and cols differ", split({"h1_to_output": ([0, 1], [2])}), GrowthError,
     ["2 rows but 1 cols"]),
    ("split: unknown activation", split([("h1_to_output", 1, 2)], activation="bogus"), ConfigError,
     ["activation must be one of", "'bogus'"]),
    ("split: fractional row", split({"h1_to_output": ([0.5], [1])}), ConfigError,
     ["must be integers", "[0.5]"]),
    ("prune: NaN row", prune([("h1_to_output", NAN, 1)]), ConfigError,
     ["integer row and col", "nan"]),
    ("prune: dict value not a pair", prune({"h1_to_output": 3}), ConfigError,
     ["must be a pair (rows, cols)", "got 3"]),
    ("prune: masked edge", prune([("input_to_h1", 1, 1)]), GrowthError, ["must be live", "(1, 1)"]),
    ("prune: col out of range", prune([("input_to_h1", 0, 4)]), GrowthError,
     ["must lie in its shape (5, 4)", "cols 4..4"]),
    ("prune: unknown connection", prune([("h9_to_output", 0, 0)]), GrowthError,
     ["connection must be one of", "'h9_to_output'"]),
    ("identity: unknown connection", identity("nope"), GrowthError, ["connection must be one of", "'nope'"]),
    ("insert: size 0", insert(0), ConfigError, ["size must be a positive integer", "size=0"]),
    ("insert: wrong weight_in shape", insert(2, w_in_shape=(2, 3)), ConfigError,
     ["weight_in must have shape (2, 4)", "shape=(2, 3)"]),
    ("insert: wrong weight_out shape", insert(2, w_out_shape=(3, 2)), ConfigError,
     ["weight_out must have shape (5, 2)", "shape=(3, 2)"]),
    ("insert: NaN weights", insert(2, fill=NAN), ConfigError, ["weight_in must be finite"]),
    ("insert: unknown activation", insert(2, activation="bogus"), ConfigError,
     ["activation must be one of", "'bogus'"]),
]


def _optimizer_snapshot(optimizer):
    groups = [{**{k: copy.deepcopy(v) for k, v in g.items() if k != "params"},
               "params": [id(p) for p in g["params"]]} for g in optimizer.param_groups]
    state = {id(p): {k: v.clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in s.items()}
             for p, s in optimizer.state.items()}
    return groups, state


def _assert_same_optimizer(before, optimizer):
    groups, state = before
    after_groups, after_state = _optimizer_snapshot(optimizer)
    assert after_groups == groups
    assert set(after_state) == set(state)
    for pid, entries in state.items():
        assert set(after_state[pid]) == set(entries)
        for key, value in entries.items():
            now = after_state[pid][key]
            assert torch.equal(now, value) if torch.is_tensor(value) else now == value


@pytest.mark.parametrize("name, op, error, fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_and_changes_nothing(name, op, error, fragments):
    net, optimizer = build()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    spec = copy.deepcopy(net.spec())
    param_ids = [id(p) for p in net.parameters()]
    opt_before = _optimizer_snapshot(optimizer)
    x = torch.rand(4, 4)
    with torch.no_grad():
        out = net(x)

    with pytest.raises(error) as info:
        op(net, optimizer)

    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    after = net.state_dict()
    assert list(after) == list(state)
    for key, value in state.items():
        assert after[key].dtype == value.dtype and torch.equal(after[key], value), key
    assert net.spec() == spec
    assert [id(p) for p in net.parameters()] == param_ids
    _assert_same_optimizer(opt_before, optimizer)
    with torch.no_grad():
        assert torch.equal(net(x), out)


def test_the_table_is_wide():
    """The acceptance criterion asks for at least 10 distinct bad inputs."""
    assert len({b[0] for b in BAD}) == len(BAD) >= 10


@pytest.mark.parametrize("widths", [[0, 3], [3], [3, -1, 2], [3, 2.5, 2], [4, True, 2], 5])
def test_bad_mlp_widths(widths):
    with pytest.raises(ConfigError, match="widths="):
        GrowableNet.mlp(widths)
