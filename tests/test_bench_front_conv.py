"""The bench's static front for conv starts (``conv=[...]``): exact ``params`` of a conv chain at any
widths, the nearest scaled widths (one factor for channels and dense widths), families split by their
conv start, front points named ``c<channels>+h<hidden>``; a real tiny bench on digits' 8x8 images run
with ``front=False`` and resumed to add the front (only the front runs train), whose front networks are
conv nets of the scaled widths with the start's conventions (SENN's tanh too), and the sweep line."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import pytest
import yaml

import selfexpand.runs as runs
from selfexpand import load_run
from selfexpand.bench import run_bench, write_bench
from selfexpand.bench.front import (ConvLayout, Family, conv_front_widths, families, front_params, point_label,
                                    point_name)
from selfexpand.bench.jobs import start_key
from selfexpand.checkpoint import load_checkpoint
from selfexpand.graph import GrowableNet
from selfexpand.graph.conv import ConvLayer


def _random_cnn(rng: random.Random, **conventions):
    """A random small ``GrowableNet.cnn`` and what built it."""
    shape = (rng.randint(1, 3), rng.randint(4, 12), rng.randint(4, 12))
    blocks = rng.randint(1, int(math.log2(min(shape[1:]))))
    conv = [rng.randint(1, 6) for _ in range(blocks)]
    hidden = [rng.randint(1, 9) for _ in range(rng.randint(0, 2))]
    n_out = rng.randint(1, 5)
    return shape, conv, hidden, n_out, GrowableNet.cnn(shape, conv, hidden, n_out, seed=0, **conventions)


@pytest.mark.parametrize("conventions", [{}, {"activation": "tanh"}, {"batch_norm": False, "pool": "avg"},
                                         {"kernel": 5, "pool": None}])
def test_conv_layout_params_are_the_built_networks_params_at_any_widths(conventions):
    rng = random.Random(str(conventions))
    for _ in range(12):
        shape, conv, hidden, n_out, net = _random_cnn(rng, **conventions)
        layout = ConvLayout.of(net)
        assert layout.params(conv, hidden) == net.counts()["params"]
        for _ in range(3):  # other widths of the same chain: built and counted
            c2, h2 = [rng.randint(1, 9) for _ in conv], [rng.randint(1, 12) for _ in hidden]
            other = GrowableNet.cnn(shape, c2, h2, n_out, seed=1, **conventions)
            assert layout.params(c2, h2) == other.counts()["params"], (shape, c2, h2, conventions)
    with pytest.raises(ValueError, match="conv and hidden layers"):
        layout.params([*conv, 1], hidden)
    with pytest.raises(ValueError, match="chain of conv blocks"):
        ConvLayout.of(GrowableNet.mlp([4, 3, 2], seed=0))


def _candidates(conv, hidden, top: float):
    """Every distinct ``[max(1, round(s * w))]`` for factors ``s`` in ``[0, top]``: at each factor where a
    width's rounding changes, just before it, and just after it."""
    widths = [*conv, *hidden]
    points = {0.0, top}
    for w in widths:
        for k in range(int(top * w) + 2):
            s = (k + 0.5) / w
            points |= {s, s * (1 - 1e-9), s * (1 + 1e-9)}
    return {tuple(max(1, round(s * w)) for w in widths) for s in points if 0 <= s <= top}


def test_conv_front_widths_are_the_nearest_scaled_widths_monotone_in_the_target_and_start_with_the_start():
    rng = random.Random(7)
    for _ in range(25):
        shape, conv, hidden, n_out, net = _random_cnn(rng)
        layout = ConvLayout.of(net)
        start = net.counts()["params"]
        offset = rng.choice([0, 0, 17])  # params outside the layout (learnable activations)
        assert conv_front_widths(start + offset, layout, conv, hidden, offset) == (conv, hidden)
        k = len(conv)
        candidates = _candidates(conv, hidden, 9.0)
        sizes = {c: layout.params(list(c[:k]), list(c[k:])) + offset for c in candidates}
        chosen_sizes = []
        for target in sorted(rng.uniform(0.3, 6.0) * start for _ in range(8)):
            c, h = conv_front_widths(target, layout, conv, hidden, offset)
            assert len(c) == len(conv) and len(h) == len(hidden) and min(c + h) >= 1
            size = layout.params(c, h) + offset
            best = min(abs(s - target) for s in sizes.values())
            assert (*c, *h) in candidates and abs(size - target) == best, (conv, hidden, target, c, h)
            real = GrowableNet.cnn(shape, c, h, n_out, seed=0).counts()["params"] + offset
            assert real == size  # the real network's params
            chosen_sizes.append(size)
        assert chosen_sizes == sorted(chosen_sizes)  # monotone in the target


def test_front_points_are_named_by_their_conv_and_dense_widths():
    assert point_name([], [16, 8]) == "16-8" and point_name([], []) == ""  # dense: as before
    assert point_name([8, 16, 32], []) == "c8-16-32" and point_name([8, 16, 32], [64, 5]) == "c8-16-32+h64-5"
    assert point_label("16-8") == "hidden 16-8" and point_label("") == "hidden none"
    assert point_label("c8-16-32+h64") == "c8-16-32+h64"


def _run_dir(path, method, settings):
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump({"method": method, "dataset": "cifar10", "front": None,
                                                      "settings": settings}))
    return path


def test_start_key_keeps_conv_starts_apart(tmp_path):
    a = _run_dir(tmp_path / "a", "random", {"hidden": [], "conv": [4, 8, 16]})
    b = _run_dir(tmp_path / "b", "zero", {"hidden": [], "conv": [8, 16]})
    c = _run_dir(tmp_path / "c", "net2net", {"hidden": [], "conv": [4, 8, 16]})
    d = _run_dir(tmp_path / "d", "swe", {"hidden": [8]})
    keys = {m: start_key(p, m) for m, p in [("random", a), ("zero", b), ("net2net", c), ("swe", d)]}
    assert keys["random"] == keys["net2net"] != keys["zero"]
    assert keys["swe"] == ("mlp", (8,), None, ())  # a dense start: conv ()
    rows = [{"method": m, "kind": "grown", "seed": 0, "error": ""} for m in keys]
    fams = families(rows, keys)
    assert [f.label for f in fams] == ["random+net2net", "zero", "swe"]
    assert fams[0].conv == [4, 8, 16] and fams[0].hidden == [] and fams[2].conv == []
    assert Family(("mlp", (8,), None)).conv == []  # a key of before conv


def _table(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _parse(name):
    conv, _, dense = name[1:].partition("+h")
    return [int(w) for w in conv.split("-")], [int(w) for w in dense.split("-")] if dense else []


def _structure(spec):
    """A network spec without its widths: what the start's conventions fix."""
    layers = {n: {k: v for k, v in lay.items() if k not in ("size", "grown")} for n, lay in spec["layers"].items()}
    conns = {n: {k: v for k, v in c.items() if k != "shape"} for n, c in spec["connections"].items()}
    return spec["order"], layers, conns, spec.get("input_shape"), spec.get("front")


def _spy(monkeypatch, name):
    calls, real = [], getattr(runs, name)

    def spy(config_or_dir, *args, **kwargs):
        calls.append(str(getattr(config_or_dir, "out", config_or_dir)))
        return real(config_or_dir, *args, **kwargs)

    monkeypatch.setattr(runs, name, spy)
    return calls


def test_a_conv_bench_without_front_resumed_adds_a_front_of_conv_nets_and_the_sweep(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    settings = {"conv": "[2]"}  # digits' rows keep hidden=[8]: channels and dense widths both scale
    first = run_bench("digits", ["zero"], 1, out, epochs=2, settings=settings, front=False, compute_twins=False)
    assert [r["kind"] for r in first] == ["grown", "twin"] and all(r["error"] == "" for r in first)
    grown = first[0]

    trained, resumed = _spy(monkeypatch, "train_run"), _spy(monkeypatch, "resume_run")
    rows = run_bench("digits", ["zero"], 1, out, epochs=2, settings=settings, front=True, compute_twins=False,
                     resume=True)
    assert resumed == [] and trained and all("/front-zero/" in c for c in trained)  # only the missing jobs
    assert [(r["kind"], r["test_metric"]) for r in rows[:2]] == [(r["kind"], r["test_metric"]) for r in first]
    front = [r for r in rows if r["kind"] == "front"]
    assert len(front) == len(trained) and 2 <= len(front) <= 5 and all(r["error"] == "" for r in front)
    names = [r["hidden"] for r in front]
    assert names[0] == "c2+h8" and all(n.startswith("c") and "+h" in n for n in names)
    params = [int(r["params_final"]) for r in front]
    assert params == sorted(params) and params[0] == int(grown["params_start"])  # the start itself first
    top = front_params(int(grown["params_start"]), int(grown["params_final"]))[-1]
    assert abs(params[-1] - top) < 0.25 * top  # about twice the largest grown params
    for row in front:
        model, _ = load_run(row["run_dir"])
        conv, hidden = _parse(row["hidden"])
        convs = [n for n in model.order if isinstance(model.layers[n], ConvLayer)]
        assert [model.layers[n].size for n in convs] == conv and model.order[1:len(conv) + 1] == convs
        assert model.widths()[len(conv) + 1:-1] == hidden and model.input_shape == (1, 8, 8)
        assert model.counts()["params"] == int(row["params_final"])
        config = yaml.safe_load((Path(row["run_dir"]) / "config.yaml").read_text())
        assert config["epochs"] == 2 and config["twin_of"].endswith(f"architectures/{row['hidden']}")
    table = _table(out / "results.csv")
    assert [r["hidden"] for r in table if r["kind"] == "front"] == names

    write_bench(rows, out, command="selfexpand bench ...")
    md = (out / "results.md").read_text()
    assert "| widths (c: conv channels, h: dense hidden) |" in md and "| zero | c2+h8 |" in md
    assert "- zero: picks c" in md and " params, seed 0)" in md


def test_a_senn_conv_front_keeps_the_starts_tanh_blocks_and_zero_output_weights(tmp_path):
    out = tmp_path / "bench"
    # no growth (grow_until=0): SENN's proposals take a minute; the front's conventions are the point here
    rows = run_bench("digits", ["senn"], 1, out, epochs=1, settings={"conv": "[2]", "grow_until": "0"},
                     compute_twins=False)
    grown = next(r for r in rows if r["kind"] == "grown")
    front = [r for r in rows if r["kind"] == "front"]
    assert front and all(r["error"] == "" for r in front) and front[0]["hidden"] == "c2+h10"
    start = load_run(grown["run_dir"])[0]
    folder = out / "runs" / "front-senn" / "architectures"
    for row in front:
        template = load_checkpoint(folder / row["hidden"] / "model.safetensors").model
        assert _structure(template.spec()) == _structure(start.spec())  # tanh, batch norm, max pooling
        assert not any(c.weight.detach().any() for c in template.incoming(template.output_name))
        assert _parse(row["hidden"]) == ([template.layers[template.order[1]].size], template.widths()[2:-1])
