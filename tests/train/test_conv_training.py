"""Conv graphs in training (issue #24): FLOPs counted from the structure equal FlopCounterMode's count and a
hand computation; a run that grows channels resumes from a checkpoint bit for bit; GrowableNet.save/load
round-trips a grown conv graph exactly; inactivity sees a dead channel."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from selfexpand import ops
from selfexpand.checkpoint import load_checkpoint, save_checkpoint
from selfexpand.graph import GrowableNet
from selfexpand.report.inactivity import unit_activity
from selfexpand.train.flops import flop_breakdown


def skip_graph():
    """input (2x6x6) -> h1 (3 ch, 3x3 pad 1, bn, max pool) -> h2 (4 ch, 3x3 stride 2 pad 1) -> output,
    plus a 1x1 stride-2 skip input[1] -> h2[0, 2] and a flatten reader of h1's channel 0."""
    net = GrowableNet.cnn((2, 6, 6), [3], output=2, seed=0)
    gen = torch.Generator().manual_seed(1)
    ops.insert_conv_layer(net, "h1_to_output", signed=False)  # h2: 3 ch identity, 3x3 of 3x3 maps
    net.add_connection("input", "h2", torch.randn(2, 1, 1, 1, generator=gen), stride=2,
                       in_index=torch.tensor([1]), out_index=torch.tensor([0, 2]))
    net.add_connection("h1", "output", torch.randn(2, 9, generator=gen), in_index=torch.tensor([0]))
    return net


def hand_flops_skip_graph() -> tuple[int, int]:
    """Per example, forward and backward (``2 * kernel entries * output positions`` per product)."""
    conv1 = 2 * (3 * 2 * 9) * 36          # input -> h1, 6x6 output; no input gradient
    conv2 = 2 * (3 * 3 * 9) * 9           # h1 -> h2 (identity layer), 3x3 output
    skip = 2 * (2 * 1 * 1) * 9            # input -> h2, 1x1 stride 2: 3x3 output; no input gradient
    dense = 2 * (2 * 27)                  # h2 (3 ch x 9 positions) -> output
    flat = 2 * (2 * 9)                    # h1 channel 0 (9 positions) -> output
    forward = conv1 + conv2 + skip + dense + flat
    backward = conv1 + 2 * conv2 + skip + 2 * dense + 2 * flat
    return forward, backward


def test_flops_equal_flop_counter_and_hand_count():
    for net, shape, hand in ((GrowableNet.cnn((3, 8, 8), [4, 5], [6], 3, seed=0), (3, 8, 8), (19860, 25896)),
                             (skip_graph(), (2, 6, 6), hand_flops_skip_graph())):
        breakdown = flop_breakdown(net)
        assert (breakdown.forward, breakdown.backward) == hand
        x = torch.rand(5, *shape)
        with FlopCounterMode(display=False) as counter:
            net(x).square().sum().backward()
        measured = counter.get_total_flops()
        assert abs(measured - 5 * sum(hand)) <= 1e-6 * measured, (measured, 5 * sum(hand))


def _batches(n_steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(6, 2, 8, 8, generator=gen), torch.randn(6, 3, generator=gen)) for _ in range(n_steps)]


def _train(net, optimizer, batches):
    net.train()
    for x, y in batches:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        optimizer.step()


def test_resume_after_conv_growth_is_bit_exact(tmp_path):
    batches = _batches(8)
    k, j = batches[:3], batches[3:5]
    m = batches[5:]

    def run(resume: bool):
        net = GrowableNet.cnn((2, 8, 8), [3, 4], [5], output=3, seed=0)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
        _train(net, optimizer, k)
        ops.add_channels(net, "h2", 2, optimizer=optimizer, generator=torch.Generator().manual_seed(3))
        ops.split_channels(net, "h1", [1], optimizer=optimizer)
        _train(net, optimizer, j)
        if resume:
            save_checkpoint(tmp_path / "ck.safetensors", net, optimizer)
            loaded = load_checkpoint(tmp_path / "ck.safetensors")
            net, optimizer = loaded.model, loaded.optimizer
        _train(net, optimizer, m)
        return net

    straight, resumed = run(False), run(True)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    x = batches[0][0]
    straight.eval(), resumed.eval()
    assert torch.equal(straight(x), resumed(x))


def test_save_load_round_trips_a_grown_conv_graph(tmp_path):
    net = skip_graph()
    ops.add_channels(net, "h1", 1)
    net(torch.rand(4, 2, 6, 6))  # batch-norm statistics move
    net.eval()
    loaded = GrowableNet.load(net.save(tmp_path / "net.safetensors")).eval()
    assert loaded.spec() == net.spec()
    x = torch.rand(3, 2, 6, 6)
    assert torch.equal(loaded(x), net(x))
    assert loaded.layers["h1"].grown.tolist() == net.layers["h1"].grown.tolist()


def test_a_dead_channel_is_seen_over_examples_and_positions():
    net = GrowableNet.cnn((2, 6, 6), [3], [4], output=2, batch_norm=False, seed=0)
    with torch.no_grad():
        net.connections["input_to_h1"].weight[1] = 0  # channel 1: relu(bias) everywhere, a constant
        net.layers["h1"].bias[1] = 0.5
    activity = unit_activity(net, torch.rand(20, 2, 6, 6))["h1"]
    assert activity.dead.tolist() == [False, True, False]
    assert activity.outgoing_norm.shape == (3,) and bool((activity.outgoing_norm > 0).all())
