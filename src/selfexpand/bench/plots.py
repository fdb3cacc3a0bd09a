"""The bench's pictures: ``pareto.png`` (test metric against final ``params``) and ``pareto_flops.png``
(test metric against the total training and growth FLOPs).

Each method has its own colour and its own marker shape; a grown run is filled, its equal-epoch twin
hollow, its equal-compute twin half filled; each family's static front is a black line, the sweep's
pick a star, one shade per family, named in the legend (FLOPs plot). The better direction of the metric is up. Runs
near chance level (accuracy gaining less than ``CHANCE_FRACTION`` of the best run's gain over
``1 / classes``) would squash the others: the y-range is fitted to the runs above it and those near it
are listed under the plot.
"""

from __future__ import annotations

from pathlib import Path

from .front import front_rows, sweeps
from .rows import kind_of, ok

__all__ = ["plot_pareto", "method_styles", "split_at_chance", "MARKERS", "CHANCE_FRACTION"]

#: one shape per method, none repeated (numsides, style, angle: 1 a star, 0 a polygon)
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", (6, 1, 0), "d", "H", "8", (7, 1, 0),
           (8, 1, 0), (5, 0, 180), (3, 1, 0), (4, 1, 0)]  # no five-pointed star: the sweep's picks are stars
CHANCE_FRACTION = 0.25
_FILL = {"grown": "full", "twin": "none", "compute-twin": "bottom"}
_KIND_LABEL = {"grown": "grown run", "twin": "equal-epoch twin (hollow)",
               "compute-twin": "equal-compute twin (half filled)"}
_LINES = ["-", "--", ":", "-."]


#: face colours of the sweep picks' stars, one per family
_STAR_FILLS = ("black", "white", "grey", "gold", "lightblue")


def _colour(i: int, n: int):
    import matplotlib

    if n <= 10:
        return matplotlib.colormaps["tab10"](i)
    tab20 = matplotlib.colormaps["tab20"]
    return tab20((2 * i) % 20 + (2 * i) // 20)  # the dark shades first, then the light ones


def _f(value) -> float:
    return float(value)


def _total_flops(row: dict):
    if row.get("train_flops") in (None, ""):
        return None
    return _f(row["train_flops"]) + _f(row.get("growth_flops") or 0)


def _chance(rows: list[dict]):
    values = [r.get("chance_metric") for r in rows if r.get("chance_metric") not in (None, "")]
    return _f(values[0]) if values else None


def method_styles(methods: list[str]) -> dict[str, tuple]:
    """``method -> (colour, marker)``: no two methods share a colour or a marker (up to 20 methods)."""
    return {m: (_colour(i, len(methods)), MARKERS[i % len(MARKERS)]) for i, m in enumerate(methods)}


def split_at_chance(rows: list[dict]) -> tuple[list[dict], list[dict], float | None]:
    """``(shown, near_chance, threshold)``: the finished runs above chance level and those near it (test
    accuracy at most ``threshold = chance + CHANCE_FRACTION * (best - chance)``, chance ``1 / classes``);
    a metric with no chance level shows every run (threshold None)."""
    finished = [r for r in rows if ok(r)]
    chance = _chance(finished)
    if chance is None or not finished:
        return finished, [], None
    best = max(_f(r["test_metric"]) for r in finished)
    threshold = chance + CHANCE_FRACTION * max(0.0, best - chance)
    near = {id(r) for r in finished if _f(r["test_metric"]) <= threshold}
    return ([r for r in finished if id(r) not in near], [r for r in finished if id(r) in near], threshold)


def plot_pareto(rows: list[dict], path_params: str | Path, path_flops: str | Path) -> None:
    """Both plots; rows that failed are left out, every run at chance level named under the plots."""
    shown, at_chance, threshold = split_at_chance(rows)
    methods = list(dict.fromkeys(r["method"] for r in rows if ok(r) and kind_of(r) != "front"))
    style = method_styles(methods)
    families = list(dict.fromkeys(r["family"] for r in shown if kind_of(r) == "front" and r.get("family")))
    for path, x_of, xlabel in ((path_params, lambda r: _f(r["params_final"]), "params (final, log scale)"),
                               (path_flops, _total_flops, "training + growth FLOPs (log scale)")):
        _plot(path, shown, at_chance, methods, families, style, x_of, xlabel, flops=path == path_flops,
              chance=threshold)


def _plot(path, shown, at_chance, methods, families, style, x_of, xlabel, *, flops: bool, chance) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(9, 5.2))
    ys = []
    for j, family in enumerate(families):
        members = [r for r in front_rows(shown, family) if x_of(r) is not None]
        by_size: dict[str, list[dict]] = {}
        for r in members:
            by_size.setdefault(r.get("hidden", ""), []).append(r)
        pts = sorted((sum(x_of(r) for r in g) / len(g), sum(_f(r["test_metric"]) for r in g) / len(g))
                     for g in by_size.values())
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="black", linestyle=_LINES[j % len(_LINES)],
                    marker="|", markersize=10, linewidth=1.2, label=f"static front: {family}", zorder=1)
            ys += [p[1] for p in pts]
        if flops:  # one star per seed, one shade per family (named in the legend, not on the plot)
            picks = [p for p in sweeps(shown, family) if p["flops"] is not None]
            if picks:
                y = [_f(p["pick"]["test_metric"]) for p in picks]
                ax.plot([p["flops"] for p in picks], y, marker="*", markersize=15, linestyle="none",
                        color=_STAR_FILLS[j % len(_STAR_FILLS)], markeredgecolor="black", zorder=4,
                        label=f"sweep pick: {family} (at the FLOPs of its whole front)")
                ys += y
    for method in methods:
        colour, marker = style[method]
        for kind, fill in _FILL.items():
            pts = [r for r in shown if r["method"] == method and kind_of(r) == kind and x_of(r) is not None]
            if pts:
                ax.plot([x_of(r) for r in pts], [_f(r["test_metric"]) for r in pts], linestyle="none",
                        marker=marker, fillstyle=fill, color=colour, markeredgecolor=colour, markersize=8,
                        markeredgewidth=1.4, alpha=0.9, zorder=3)
                ys += [_f(r["test_metric"]) for r in pts]
    drawn = {r["method"] for r in shown}
    handles = [Line2D([], [], linestyle="none", marker=style[m][1], color=style[m][0], markersize=8, label=m)
               for m in methods if m in drawn]
    handles += [Line2D([], [], linestyle="none", marker="o", fillstyle=_FILL[k], color="grey", markersize=8,
                       label=_KIND_LABEL[k]) for k in _FILL]
    extra, labels = ax.get_legend_handles_labels()
    named = [(h, lab) for h, lab in zip(extra, labels) if lab and not lab.startswith("_")]
    handles += [h for h, lab in sorted(named, key=lambda hl: not hl[1].startswith("static front"))]
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    metric = shown[0]["metric_name"] if shown else "metric"
    ax.set_ylabel(f"test {metric} (better: up)")
    if ys:
        lo, hi = min(ys), max(ys)
        pad = (hi - lo) * 0.08 or abs(hi) * 0.01 or 0.01
        ax.set_ylim(lo - pad, hi + pad)
    if shown and str(shown[0].get("higher_is_better", True)) in ("False", "false"):
        ax.invert_yaxis()  # lower is better: up is better
    ax.grid(True, which="both", alpha=0.25)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    if at_chance:
        fig.text(0.01, -0.02, _chance_note(at_chance, chance), fontsize=8, va="top", wrap=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _chance_note(at_chance: list[dict], chance: float) -> str:
    groups: dict[tuple, list[float]] = {}
    for r in at_chance:
        groups.setdefault((r["method"], kind_of(r)), []).append(_f(r["test_metric"]))
    parts = [f"{m}{'' if k == 'grown' else f' ({k})'}: {', '.join(f'{v:.3f}' for v in vs)}"
             for (m, k), vs in groups.items()]
    return f"Not shown, near chance level (test metric <= {chance:.3g}): " + "; ".join(parts)
