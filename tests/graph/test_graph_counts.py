"""``net.counts()`` against values worked out by hand (DESIGN.md, "Counts, one definition").

- ``params``: live weights + biases of live units + learnable activation coefficients;
- ``weights_active``: live weights only (eps edges included);
- ``stored_params``: every stored weight entry (masked included), every bias, every coefficient;
- ``front_params``, ``control_params``: the front's and the modulators' parameters.
A unit whose modulator factor is 0 is not live, nor are the weights into or out of it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfexpand import ops
from selfexpand.graph import GateModulator, GrowableNet

KEYS = ("params", "weights_active", "stored_params", "front_params", "control_params")


def _counts(params, weights_active, stored_params, front_params=0, control_params=0):
    return dict(zip(KEYS, (params, weights_active, stored_params, front_params, control_params)))


def linear_4_3():
    return GrowableNet.mlp([4, 3], seed=0)


def mlp_3_4_2():
    return GrowableNet.mlp([3, 4, 2], seed=0)


def split_shared_parent(net):
    # edges output<-input (row 0, col 1) and (row 2, col 1): one shared parent, input unit 1
    return ops.split_edges(net, [("input_to_output", 0, 1), ("input_to_output", 2, 1)], eps=0.0)


def build_plain(_):
    # 4 -> 3: weights 4*3 = 12, biases 3 -> params 15, weights_active 12, stored 12 + 3 = 15
    return linear_4_3(), _counts(15, 12, 15)


def build_mlp(_):
    # 3 -> 4 -> 2: weights 3*4 + 4*2 = 12 + 8 = 20, biases 4 + 2 = 6 -> params 26, stored 26
    return mlp_3_4_2(), _counts(26, 20, 26)


def build_split_shared_parent(_):
    net = linear_4_3()
    split_shared_parent(net)
    # direct 3x4 stored 12, 2 masked -> 10 live
    # new layer E: 2 units (one per edge) reading |P| = 1 parent: input->E 2x1 = 2 live weights
    # E->output 3x2 = 6 stored: 2 carry w, 4 eps edges (0 at eps=0, but live)
    # weights_active = 10 + 2 + 6 = 18; biases 3 + 2 = 5 -> params 23
    # stored = 12 + 2 + 6 + 5 = 25
    return net, _counts(23, 18, 25)


def build_split_signed(_):
    net = linear_4_3()
    ops.split_edges(net, [("input_to_output", 0, 1), ("input_to_output", 2, 1)], eps=0.0, signed=True)
    # signed: two units per edge -> E has 4 units; input->E 4x1 = 4; E->output 3x4 = 12
    # weights_active = 10 + 4 + 12 = 26; biases 3 + 4 = 7 -> params 33; stored 12 + 4 + 12 + 7 = 35
    return net, _counts(33, 26, 35)


def build_split_two_parents(_):
    net = linear_4_3()
    ops.split_edges(net, [("input_to_output", 0, 1), ("input_to_output", 2, 3)], eps=0.0)
    # P = {1, 3}: input->E 2x2 = 4 (2 of them eps edges); E->output 3x2 = 6
    # weights_active = 10 + 4 + 6 = 20; biases 5 -> params 25; stored 12 + 4 + 6 + 5 = 27
    return net, _counts(25, 20, 27)


def build_split_then_prune(_):
    net = linear_4_3()
    split_shared_parent(net)
    # prune the 4 eps edges of E->output (rows 1 and 2 of unit 0, rows 0 and 1 of unit 1):
    eps_edges = [("h1_to_output", 1, 0), ("h1_to_output", 2, 0), ("h1_to_output", 0, 1),
                 ("h1_to_output", 1, 1)]
    ops.prune_edges(net, eps_edges)
    # weights_active = 10 + 2 + 2 = 14; params = 14 + 5 = 19; stored unchanged: 25
    return net, _counts(19, 14, 25)


def build_split_prune_compact(_):
    net, _ = build_split_then_prune(None)
    ops.compact(net)
    # E->output: row 1 has no live edge -> dropped, stored 2x2 = 4 (rows 0, 2; both columns live)
    # direct 3x4: column 1 still has a live edge (row 1) -> kept, 12 stored
    # stored = 12 + 2 + 4 + 5 = 23; live counts unchanged: weights_active 14, params 19
    return net, _counts(19, 14, 23)


def build_split_prune_column_compact(_):
    net, _ = build_split_then_prune(None)
    ops.prune_edges(net, [("input_to_output", 1, 1)])  # column 1 of the direct weight now all masked
    ops.compact(net)
    # direct: column 1 dropped -> 3x3 = 9 stored, all live; input->E 2; E->output 2x2 = 4
    # weights_active = 9 + 2 + 2 = 13; params 13 + 5 = 18; stored 9 + 2 + 4 + 5 = 20
    return net, _counts(18, 13, 20)


def gated_mlp(gate_values):
    net = mlp_3_4_2()
    mod = GateModulator(4)
    with torch.no_grad():
        mod.gate.copy_(torch.tensor(gate_values))
    net.layers["h1"].modulator = mod
    net.invalidate()
    return net


def build_gate_dead_unit(_):
    net = gated_mlp([0.5, -1.0, 0.0, -0.25])  # factors 1.5, 0, 1, 0.75: unit 1 is not live
    # dead unit 1: its 3 incoming and 2 outgoing weights and its bias leave params / weights_active
    # weights_active = 20 - 3 - 2 = 15; biases 3 + 2 = 5 -> params 20
    # stored keeps everything: 20 + 6 = 26; control_params = 4 gates
    return net, _counts(20, 15, 26, control_params=4)


def build_gate_dead_unit_and_pruned(_):
    net = gated_mlp([0.5, -1.0, 0.0, -0.25])
    # one pruned edge into the dead unit (already not counted) and one into live unit 0
    ops.prune_edges(net, [("input_to_h1", 1, 0), ("input_to_h1", 0, 0)])
    # weights_active = 15 - 1 = 14 (no double subtraction); params 14 + 5 = 19; stored 26
    return net, _counts(19, 14, 26, control_params=4)


def build_gate_all_live(_):
    net = gated_mlp([0.1, 0.2, -0.3, 2.0])  # no factor is 0: every unit live
    return net, _counts(26, 20, 26, control_params=4)


def build_learnable_activation(_):
    net = mlp_3_4_2()
    net.layers["h1"].activation = nn.PReLU()  # one learnable coefficient
    net.invalidate()
    # params 26 + 1 = 27; stored 26 + 1 = 27; weights_active 20
    return net, _counts(27, 20, 27)


def build_front(_):
    front = nn.Sequential(nn.Linear(6, 3), nn.ReLU())  # 6*3 + 3 = 21 front params
    net = GrowableNet.mlp([3, 4, 2], seed=0, front=front)
    return net, _counts(26, 20, 26, front_params=21)


def build_add_units(_):
    net = mlp_3_4_2()
    ops.add_units(net, "h1", 2, incoming={"input_to_h1": torch.ones(2, 3)},
                  outgoing={"h1_to_output": torch.zeros(2, 2)})
    # 3 -> 6 -> 2: weights 18 + 12 = 30, biases 6 + 2 = 8 -> 38 (zero outgoing weights are live)
    return net, _counts(38, 30, 38)


def build_remove_units(_):
    net = mlp_3_4_2()
    ops.remove_units(net, "h1", [0, 3])
    # 3 -> 2 -> 2: weights 6 + 4 = 10, biases 2 + 2 = 4 -> 14
    return net, _counts(14, 10, 14)


def build_identity(signed):
    net = mlp_3_4_2()
    ops.insert_identity_layer(net, "h1_to_output", signed=signed)
    if signed:
        # new layer 8 units: 4->8 = 32, 8->2 = 16; weights 12 + 32 + 16 = 60; biases 4 + 8 + 2 = 14
        return net, _counts(74, 60, 74)
    # new layer 4 units: 4->4 = 16, 4->2 = 8; weights 12 + 16 + 8 = 36; biases 4 + 4 + 2 = 10
    return net, _counts(46, 36, 46)


CASES = {
    "plain 4->3": (build_plain, None),
    "mlp 3-4-2": (build_mlp, None),
    "split, shared parent": (build_split_shared_parent, None),
    "split signed, shared parent": (build_split_signed, None),
    "split, two parents": (build_split_two_parents, None),
    "split then prune eps edges": (build_split_then_prune, None),
    "split, prune, compact": (build_split_prune_compact, None),
    "split, prune a column, compact": (build_split_prune_column_compact, None),
    "gate with a zero factor": (build_gate_dead_unit, None),
    "gate zero factor + pruned": (build_gate_dead_unit_and_pruned, None),
    "gate, all live": (build_gate_all_live, None),
    "learnable activation": (build_learnable_activation, None),
    "front": (build_front, None),
    "add 2 units": (build_add_units, None),
    "remove 2 units": (build_remove_units, None),
    "identity layer": (build_identity, False),
    "identity layer signed": (build_identity, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_counts_by_hand(case):
    build, arg = CASES[case]
    net, expected = build(arg)
    assert net.counts() == expected
    assert net.params == expected["params"]


def test_split_storage_follows_the_parents():
    """An edge-expansion layer stores ``|E| x |P|``, not ``|E| x all inputs`` (DESIGN.md)."""
    net = GrowableNet.mlp([10, 3], seed=0)
    ev = ops.split_edges(net, [("input_to_output", 0, 7), ("input_to_output", 1, 7),
                               ("input_to_output", 2, 2)], eps=0.0)
    conn_in, conn_out = (net.connections[c] for c in ev.details["connections"])
    assert conn_in.shape == (3, 2)  # |E| = 3 units, |P| = 2 parents
    assert conn_in.in_index.tolist() == [2, 7]
    assert conn_out.shape == (3, 3)


def test_compaction_reaches_the_live_count():
    """After pruning all but two edges and compacting, storage shrinks to the block holding them."""
    net = GrowableNet.mlp([4, 3], seed=0)
    keep = {(0, 0), (2, 3)}
    prune = [("input_to_output", r, c) for r in range(3) for c in range(4) if (r, c) not in keep]
    ops.prune_edges(net, prune)
    ops.compact(net)
    # live: 2 weights + 3 biases = 5; stored after compaction: rows {0, 2} x cols {0, 3} = 4 entries,
    # 2 of them masked (the stored block is the smallest rectangle), + 3 biases = 7
    assert net.counts() == _counts(5, 2, 7)
    conn = net.connections["input_to_output"]
    assert conn.in_index.tolist() == [0, 3] and conn.out_index.tolist() == [0, 2]


def test_control_params_follow_growth_of_a_gated_layer():
    net = gated_mlp([0.0, 0.0, 0.0, 0.0])
    ops.add_units(net, "h1", 3, incoming={"input_to_h1": torch.ones(3, 3)},
                  outgoing={"h1_to_output": torch.zeros(2, 3)})
    assert net.counts()["control_params"] == 7
    ops.remove_units(net, "h1", [0])
    assert net.counts()["control_params"] == 6
