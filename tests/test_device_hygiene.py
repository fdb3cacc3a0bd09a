"""Device hygiene of the training loop and the growth strategies (issue #27): no silent host round trip.

Every ``.cpu()``, ``.item()``, ``.tolist()``, ``.numpy()`` and ``torch.Generator()`` without ``device=``
in ``selfexpand/train`` and ``selfexpand/strategies`` must be in :data:`ALLOWED`, each with the reason
it is there (how often it runs and why on the host). A new one fails this test until it is reviewed
and listed; an entry that no longer matches anything fails too, so the list stays the code's.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "selfexpand"
FOLDERS = ("train", "strategies")
PATTERN = re.compile(r"\.cpu\(\)|\.item\(\)|\.tolist\(\)|\.numpy\(\)|torch\.Generator\(\)")

_EVENT = "once per growth event, into the event's JSON record"
_HOST64 = "once per growth event: the growth step's float64 algebra runs on the host"
_ERROR = "only to build an error message"

#: (file under src/selfexpand, the line's text, stripped) -> why it may stay
ALLOWED: dict[tuple[str, str], str] = {
    ("train/trainer.py", "generator = torch.Generator().manual_seed(self.seed)"):
        "the data order is drawn on the host so that a run sees the same batches on every device; "
        "one randperm per epoch",
    ("train/context.py", "return [(total / max(n, 1)).cpu() for total in totals]"):
        "once per gradient pass (a growth step's statistics), after the sums were taken on the device",
    ("train/distributed.py", "return t.tolist()"):
        "once per epoch on several ranks: the epoch's loss sum and example count, for its record",
    ("train/distributed.py", "h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())"):
        "once per growth step on several ranks: the digest that checks the ranks agree hashes on the host",
    ("strategies/initializers/natural_expansion.py", "w = conn.effective_weight().detach().double().cpu()"):
        _HOST64 + " (SENN's W B^-1 solve)",
    ("strategies/initializers/gradmax.py",
     'events[-1].details["singular_values"] = torch.linalg.svdvals(m)[:k].tolist()'): _EVENT,
    ("strategies/initializers/gradmax_conv.py",
     'event.details["singular_values"] = torch.linalg.svdvals(m)[:k].tolist()'): _EVENT,
    ("strategies/initializers/firefly.py",
     'raise GrowthError(f"each unit can be split once per call, got sources={sources.tolist()}")'): _ERROR,
    ("strategies/initializers/firefly_conv.py",
     'raise GrowthError(f"each channel can be split once per call, got sources={sources.tolist()}")'): _ERROR,
    ("strategies/initializers/firefly.py", 'event.details["split_directions"] = directions.tolist()'): _EVENT,
    ("strategies/initializers/firefly_conv.py", 'event.details["split_directions"] = directions.tolist()'): _EVENT,
    ("strategies/initializers/firefly.py",
     "event = apply_splits(net, site.layer, split_top, directions[split_top.cpu()], self.eps,"):
        "once per growth event: the chosen rows of directions kept on the host by _splits",
    ("strategies/initializers/firefly.py", 'event.details.update({"chosen": split_top.tolist(),'): _EVENT,
    ("strategies/initializers/firefly.py", '"predicted_decrease": split_scores[split_top].tolist()})'): _EVENT,
    ("strategies/initializers/firefly.py", 'event.details.update({"chosen": new_top.tolist(),'): _EVENT,
    ("strategies/initializers/firefly.py", '"first_order_decrease": (self.eps * norms[new_top]).tolist()})'):
        _EVENT,
    ("strategies/initializers/firefly.py", "return directions[rows, best].cpu(), scores[rows, best]"):
        "once per growth event: the split directions go to apply_splits, which builds them on the host",
    ("strategies/initializers/firefly_conv.py",
     'event.details.update({"chosen": split_top.tolist(), "predicted_decrease": split_scores[split_top].tolist()})'):
        _EVENT,
    ("strategies/initializers/firefly_conv.py",
     'event.details.update({"chosen": new_top.tolist(), '
     '"first_order_decrease": (init.eps * norms[new_top]).tolist()})'):
        _EVENT,
    ("strategies/initializers/shared_weights.py",
     "return (-_pre_activations(ctx, layer, incoming).median(0).values).cpu()"):
        "once per growth event: SWE's new biases, the values add_units takes",
    ("strategies/senn/proposals.py",
     'raise ConfigError(f"scores must not be NaN or +inf (-inf means \'never choose\'), got {scores.tolist()}")'):
        _ERROR,
    ("strategies/senn/proposals.py", 'raise ConfigError(f"at least one score must be finite, got {scores.tolist()}")'):
        _ERROR,
    ("strategies/senn/chain_sample.py", "acts = {k: v.detach().double().cpu() for k, v in acts.items()}"):
        _HOST64 + " (SENN's scores over the chain's sample, once per check)",
    ("strategies/senn/chain_sample.py", "g = (torch.zeros_like(pre) if g is None else g).detach().double().cpu()"):
        _HOST64 + " (SENN's scores over the chain's sample, once per check)",
    ("strategies/selectors/steepest_voting.py", "wg = c.weight.detach().double().cpu() * grads[slot]"):
        _HOST64 + " (SVoD's votes against mean_gradients, which returns host tensors)",
    ("strategies/selectors/steepest_voting.py",
     "ranked = owner[torch.sort(pooled, stable=True).indices.cpu()].tolist()"):
        "once per growth event: the votes are counted in Python",
    ("strategies/selectors/natural_expansion.py", "for i in scores.argsort(descending=True).tolist():"):
        "once per depth proposal: a Python loop over at most the proposals' count",
    ("strategies/selectors/natural_expansion.py",
     "w = net.connections[conn].effective_weight().detach().double().cpu()"):
        _HOST64 + " (SENN's depth score)",
}


def _occurrences(src: Path = SRC) -> Counter:
    found = Counter()
    for folder in FOLDERS:
        for path in sorted((src / folder).rglob("*.py")):
            for line in path.read_text().splitlines():
                text = line.strip()
                if text.startswith("#") or not PATTERN.search(text):
                    continue
                if "torch.Generator()" in text and "device=" in text:
                    continue
                found[(path.relative_to(src).as_posix(), text)] += 1
    return found


def test_every_host_round_trip_is_reviewed():
    found = _occurrences()
    unreviewed = sorted(key for key in found if key not in ALLOWED)
    assert not unreviewed, "host round trips not in ALLOWED (move the work to the device, or list it " \
                           "with its reason):\n" + "\n".join(f"{f}: {t}" for f, t in unreviewed)


def test_the_allow_list_has_no_stale_entry_and_every_entry_a_reason():
    found = _occurrences()
    stale = sorted(key for key in ALLOWED if key not in found)
    assert not stale, "ALLOWED entries that match no line any more:\n" + "\n".join(f"{f}: {t}" for f, t in stale)
    assert all(isinstance(reason, str) and len(reason) > 20 for reason in ALLOWED.values())


def test_the_check_catches_a_planted_round_trip(tmp_path):
    """The scan can fail: a planted ``.item()`` in a copy of the training folder is reported."""
    import shutil

    copy = tmp_path / "selfexpand"
    for folder in FOLDERS:
        shutil.copytree(SRC / folder, copy / folder)
    with open(copy / "train" / "context.py", "a") as fh:
        fh.write("\nloss_value = loss.item()\n")
    found = _occurrences(copy)
    assert ("train/context.py", "loss_value = loss.item()") in found
    assert ("train/context.py", "loss_value = loss.item()") not in ALLOWED
