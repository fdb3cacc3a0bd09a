"""Edge expansion (ALGORITHMS.md §1): significant edges into the output layer become paths through new
units when the validation loss plateaus; the eps edges that stay useless are pruned.

``edge-reference`` keeps the reference code's MNIST values (and its latest Fashion-MNIST ones) for
reproduction; ``edge`` has rows chosen on validation data (docs/benchmarks.md).
"""

from .preset import Preset

_PARTS = dict(trigger="plateau", selector="edge-significance", initializer="edge-split")

_EDGE_REFERENCE = dict(
    epochs=64, batch_size=256, lr=1e-3, optimizer="adam", weight_decay=0.0, lr_schedule="constant",
    hidden=[], max_params=None, metric="abs_grad", aggregation="mean", tau=0.7, tau_prune=0.1,
    plateau_threshold=0.005, min_gap=8, window=5, prune_after=2, max_new=900, eps=1e-8, signed="auto",
)

# Small data (digits, the user's tables), chosen on digits validation accuracy (docs/benchmarks.md).
_EDGE_SMALL = {**_EDGE_REFERENCE, "epochs": 60, "batch_size": 32, "lr": 1e-2, "plateau_threshold": 0.01,
               "min_gap": 4, "window": 3, "max_new": 32, "tau": 0.3}

# MNIST-sized data under a 60k params budget: lower tau, gentler pruning, more frequent growth; chosen
# on validation accuracy among 6 variants on MNIST and 5 on Fashion-MNIST (docs/benchmarks.md, "Edge
# expansion on MNIST and Fashion-MNIST").
_EDGE_60K = {**_EDGE_REFERENCE, "tau": 0.3, "tau_prune": 0.02, "max_params": 60000, "min_gap": 4,
             "window": 3}

# The reference's latest Fashion-MNIST values (ALGORITHMS.md §1).
_EDGE_REFERENCE_FASHION = {**_EDGE_REFERENCE, "batch_size": 64, "optimizer": "adamw", "lr": 2e-4,
                           "weight_decay": 1e-3, "aggregation": "variance", "tau": 0.3,
                           "plateau_threshold": 0.05, "tau_prune": 0.0145, "max_new": 2500}

PRESETS = (
    Preset("edge", "edge expansion: split significant output edges on a validation-loss plateau, prune "
                   "useless eps edges",
           rows={"*": _EDGE_REFERENCE, "digits": _EDGE_SMALL, "table": _EDGE_SMALL, "mnist": _EDGE_60K,
                 "fashion-mnist": _EDGE_60K},
           **_PARTS),
    Preset("edge-reference", "edge expansion with the reference code's settings (for reproduction)",
           rows={"*": _EDGE_REFERENCE, "fashion-mnist": _EDGE_REFERENCE_FASHION}, **_PARTS),
)
