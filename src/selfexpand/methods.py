"""The published methods as presets of trigger + selector + initializer, with per-dataset defaults.

Every preset is one readable row: the start architecture, the training settings, and the method's
own settings. ``--set key=value`` overrides one setting; unknown keys are an error listing the known
ones. ``edge-reference`` keeps the reference code's MNIST values for reproduction.
"""

from __future__ import annotations

import copy

from .errors import ConfigError
from .method_parts import PART_KINDS, part_defaults, swap_parts
from .strategies.edge_pruning import EpsEdgePruner
from .strategies.edge_statistics import EdgeStatistics
from .strategies.initializers.edge_split import EdgeSplitInitializer
from .strategies.initializers.firefly import FireflyInitializer
from .strategies.initializers.gradmax import GradMaxInitializer
from .strategies.initializers.net2net import Net2NetWiderInitializer
from .strategies.initializers.new_units import RandomUnitsInitializer, ZeroUnitsInitializer
from .strategies.initializers.shared_weights import SharedWeightsExtender
from .strategies.selectors.edge_significance import EdgeSignificanceSelector
from .strategies.selectors.fixed_units import AllLayersSelector
from .strategies.selectors.steepest_voting import SteepestVotingSelector
from .strategies.start_values import NonNegativeBiases
from .strategies.triggers.interval import IntervalTrigger
from .strategies.triggers.plateau import PlateauTrigger
from .strategies.triggers.rounds import REFERENCE_SCHEDULE, RoundsTrigger
from .train.trainer import GrowthMethod

__all__ = ["METHODS", "DEFAULTS", "method_names", "resolve_config", "build_method"]

_EDGE_REFERENCE = dict(
    epochs=64, batch_size=256, lr=1e-3, optimizer="adam", weight_decay=0.0, lr_schedule="constant",
    hidden=[], max_params=None, metric="abs_grad", aggregation="mean", tau=0.7, tau_prune=0.1,
    plateau_threshold=0.005, min_gap=8, window=5, prune_after=2, max_new=900, eps=1e-8, signed="auto",
)

# Small data (digits, the user's tables), chosen on digits validation accuracy (docs/benchmarks.md).
_EDGE_SMALL = {**_EDGE_REFERENCE, "epochs": 60, "batch_size": 32, "lr": 1e-2, "plateau_threshold": 0.01,
               "min_gap": 4, "window": 3, "max_new": 32, "tau": 0.3}

# MNIST-sized data under a 60k params budget: lower tau, gentler pruning, more frequent growth.
_EDGE_60K = {**_EDGE_REFERENCE, "tau": 0.3, "tau_prune": 0.02, "max_params": 60000, "min_gap": 4,
             "window": 3}

# The reference's latest Fashion-MNIST values (ALGORITHMS.md §1).
_EDGE_REFERENCE_FASHION = {**_EDGE_REFERENCE, "batch_size": 64, "optimizer": "adamw", "lr": 2e-4,
                           "weight_decay": 1e-3, "aggregation": "variance", "tau": 0.3,
                           "plateau_threshold": 0.05, "tau_prune": 0.0145, "max_new": 2500}

# SWE + SVoD (ALGORITHMS.md §2): the reference protocol, start 784-62-62-62-10, 3 rounds of at
# most 8 epochs, B = 36, 47, Adam lr 1e-3 with weight decay 1e-4 (L2), batch 100. `epochs` is only a
# budget: the rounds end the run. `ratio` 0 uses `schedule`; > 0 grows schedule[0] * ratio**r.
# donation_lr and new_bias depart from the paper (which is donation_lr=run, new_bias=kaiming): chosen
# on MNIST validation data and inactivity, every variant in docs/benchmarks.md ("SWE + SVoD").
_SWE_REFERENCE = dict(
    epochs=60, batch_size=100, lr=1e-3, optimizer="adam", weight_decay=1e-4, lr_schedule="constant",
    hidden=[62, 62, 62], max_params=None, rounds=3, schedule=list(REFERENCE_SCHEDULE), ratio=0.0,
    patience=20, final_patience=30, max_round_epochs=8, monitor="val_loss", candidates_per_unit=2,
    init_scale=0.01, copy_lr=1e-3, copy_momentum=0.1, copy_alpha=0.9, donation_std=1e-4,
    integration_epochs=1, existing_rows="frozen", donation_lr="per_sqrt_unit", max_donation_entries=2 ** 26,
    nonnegative_biases=True, new_bias="median",
)

# digits: 64-16-16-16-10 growing by 8 then 12 units; rounds of at most 30 epochs. lr 1e-2 beat 3e-3
# on digits validation accuracy for seeds 0, 1, 2 (0.972 / 0.951 / 0.972 against 0.969 / 0.934 / 0.958).
_SWE_SMALL = {**_SWE_REFERENCE, "epochs": 120, "batch_size": 32, "lr": 1e-2, "hidden": [16, 16, 16],
              "schedule": [8, 12], "patience": 8, "final_patience": 12, "max_round_epochs": 30}

_SWE_FAMILY = {"*": _SWE_REFERENCE, "digits": _SWE_SMALL, "table": _SWE_SMALL}

# Baselines (ALGORITHMS.md §5) on GroMo's schedule: one hidden layer of 8 units, +6 units after each
# of the first 11 epochs, 20 epochs of Adam. digits: +4 units, 40 epochs at lr 1e-2, batch 32.
_BASELINE = dict(epochs=20, batch_size=64, lr=1e-3, optimizer="adam", weight_decay=0.0, lr_schedule="constant",
                 hidden=[8], max_params=None, units=6, every=1, times=11)
_BASELINE_SMALL = {**_BASELINE, "epochs": 40, "batch_size": 32, "lr": 1e-2, "units": 4}


def _baseline_rows(**extra) -> dict:
    return {"*": {**_BASELINE, **extra}, "digits": {**_BASELINE_SMALL, **extra},
            "table": {**_BASELINE_SMALL, **extra}}


_STATIC_SMALL = dict(epochs=60, batch_size=32, lr=1e-2, optimizer="adam", weight_decay=0.0,
                     lr_schedule="constant", hidden=[], max_params=None)

# method -> dataset ("*" = any other, "table" = the user's own CSV / NPZ) -> settings. Values chosen on validation data; see docs/methods.md.
DEFAULTS: dict[str, dict[str, dict]] = {
    "edge": {
        "*": _EDGE_REFERENCE,
        "digits": _EDGE_SMALL,
        # the user's own CSV / NPZ files: small tables, so the digits settings
        "table": _EDGE_SMALL,
        # chosen on validation accuracy among 6 variants on MNIST and 5 on Fashion-MNIST
        # (docs/benchmarks.md, "Edge expansion on MNIST and Fashion-MNIST")
        "mnist": _EDGE_60K,
        "fashion-mnist": _EDGE_60K,
    },
    "edge-reference": {"*": _EDGE_REFERENCE, "fashion-mnist": _EDGE_REFERENCE_FASHION},
    "random": _baseline_rows(),
    "zero": _baseline_rows(),
    "net2net": _baseline_rows(noise=1e-3),
    "gradmax": _baseline_rows(epsilon=1e-3),
    "firefly": _baseline_rows(candidates_per_unit=4, eps=1e-2, steps=10, splits=True),
    "swe": _SWE_FAMILY,
    "svod-random": _SWE_FAMILY,
    "svod-zero": _SWE_FAMILY,
    "static": {
        "*": dict(epochs=20, batch_size=128, lr=1e-3, optimizer="adam", weight_decay=0.0,
                  lr_schedule="constant", hidden=[], max_params=None),
        "digits": _STATIC_SMALL,
        "table": _STATIC_SMALL,
    },
}


def _edge(cfg: dict) -> GrowthMethod:
    stats = EdgeStatistics(cfg["metric"], cfg["aggregation"])
    return GrowthMethod(
        name="edge",
        trigger=PlateauTrigger(cfg["plateau_threshold"], cfg["min_gap"], cfg["window"], cfg["prune_after"]),
        selector=EdgeSignificanceSelector(stats, cfg["tau"], cfg["max_new"], cfg["signed"]),
        initializer=EdgeSplitInitializer(cfg["eps"], cfg["signed"]),
        extras=[stats, EpsEdgePruner(stats, cfg["tau_prune"], cfg["prune_after"])],
    )


def _svod(initializer):
    def build(cfg: dict) -> GrowthMethod:
        first = cfg["schedule"][0] if cfg["schedule"] else 1
        trigger = RoundsTrigger(cfg["rounds"], schedule=None if cfg["ratio"] else cfg["schedule"],
                                ratio=cfg["ratio"] or None, first=first if cfg["ratio"] else None,
                                patience=cfg["patience"], final_patience=cfg["final_patience"],
                                max_round_epochs=cfg["max_round_epochs"], monitor=cfg["monitor"])
        selector = SteepestVotingSelector(first, candidates_per_unit=cfg["candidates_per_unit"],
                                          init_scale=cfg["init_scale"], copy_lr=cfg["copy_lr"],
                                          copy_momentum=cfg["copy_momentum"], copy_alpha=cfg["copy_alpha"])
        extras = [NonNegativeBiases()] if cfg["nonnegative_biases"] else []
        return GrowthMethod("svod", trigger=trigger, selector=selector, initializer=initializer(cfg), extras=extras)

    return build


def _swe_initializer(cfg: dict) -> SharedWeightsExtender:
    return SharedWeightsExtender(cfg["donation_std"], integration_epochs=cfg["integration_epochs"],
                                 existing_rows=cfg["existing_rows"], donation_lr=cfg["donation_lr"],
                                 new_bias=cfg["new_bias"],
                                 max_donation_entries=cfg["max_donation_entries"])


def _baseline(initializer):
    def build(cfg: dict) -> GrowthMethod:
        return GrowthMethod("baseline", trigger=IntervalTrigger(cfg["every"], times=cfg["times"]),
                            selector=AllLayersSelector(cfg["units"]), initializer=initializer(cfg))

    return build


METHODS = {
    "edge": _edge,
    "random": _baseline(lambda cfg: RandomUnitsInitializer()),
    "zero": _baseline(lambda cfg: ZeroUnitsInitializer()),
    "net2net": _baseline(lambda cfg: Net2NetWiderInitializer(cfg["noise"])),
    "gradmax": _baseline(lambda cfg: GradMaxInitializer(cfg["epsilon"])),
    "firefly": _baseline(lambda cfg: FireflyInitializer(cfg["candidates_per_unit"], eps=cfg["eps"],
                                                        steps=cfg["steps"], splits=cfg["splits"])),
    "edge-reference": _edge,
    "swe": _svod(_swe_initializer),
    "svod-random": _svod(lambda cfg: RandomUnitsInitializer()),
    "svod-zero": _svod(lambda cfg: ZeroUnitsInitializer()),
    "static": lambda cfg: GrowthMethod("static"),
}

# Size by gradient descent (ALGORITHMS.md §4): size-weight, controller-mask(-reference). Their rows,
# builders and start networks live in size_methods.py; MODEL_BUILDERS names the methods that build
# their own start network (runs.py asks it before its default MLP).
from .size_methods import MODEL_BUILDERS, SIZE_DEFAULTS, SIZE_METHODS  # noqa: E402

DEFAULTS.update(SIZE_DEFAULTS)
METHODS.update(SIZE_METHODS)

# SENN (ALGORITHMS.md §3): rows, builder and start network in senn_methods.py.
from .senn_methods import SENN_DEFAULTS, SENN_METHODS, SENN_MODEL_BUILDERS  # noqa: E402

DEFAULTS.update(SENN_DEFAULTS)
METHODS.update(SENN_METHODS)
MODEL_BUILDERS.update(SENN_MODEL_BUILDERS)


def method_names() -> list[str]:
    return sorted(METHODS)


def resolve_config(method: str, dataset: str, overrides: dict | None = None) -> dict:
    """The method's settings for ``dataset`` with ``overrides`` applied (types checked). Overrides
    ``trigger`` / ``selector`` / ``initializer`` name parts to swap in (``method_parts.py``); their
    settings join the row.

    Raises:
        ConfigError: unknown method, unknown key, or a value of the wrong type.
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {method_names()}, got method={method!r}")
    table = DEFAULTS[method]
    cfg = copy.deepcopy(table.get(dataset, table["*"]))
    overrides = dict(overrides or {})
    choices = {k: overrides.pop(k) for k in PART_KINDS if overrides.get(k) is not None}
    if choices:  # --trigger / --selector / --initializer: the part's own settings join the row
        cfg = {**copy.deepcopy(part_defaults(choices)), **cfg, **choices}
    for key, value in overrides.items():
        if key in PART_KINDS:
            continue  # None: the method's own part
        if key not in cfg:
            raise ConfigError(f"setting must be one of {sorted(cfg)} for method {method!r}, got {key!r}")
        cfg[key] = _coerce(key, value, cfg[key])
    return cfg


def build_method(method: str, cfg: dict) -> GrowthMethod:
    """The :class:`GrowthMethod` for ``method`` with resolved settings ``cfg``."""
    built = swap_parts(method, METHODS[method](cfg), cfg)
    built.name = method
    return built


def _coerce(key: str, value, default):
    """``value`` (maybe a string from ``--set``) as the type of ``default``."""
    try:
        if isinstance(value, str):
            import yaml

            value = yaml.safe_load(value)
        if isinstance(value, str) and isinstance(default, float):
            value = float(value)  # YAML 1.1 reads "1e-3" as text
        if key == "max_params":
            if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                return value
            raise ValueError
        if isinstance(default, bool) or key == "signed":
            if value not in ("auto", True, False):
                raise ValueError
            return value
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError
            return float(value)
        if isinstance(default, list):
            if isinstance(value, int):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, int) and v > 0 for v in value):
                raise ValueError
            return value
        if isinstance(default, str) and not isinstance(value, str):
            raise ValueError
        return value
    except ValueError:
        raise ConfigError(f"{key} must be like {default!r} ({type(default).__name__}), got {key}={value!r}") from None
