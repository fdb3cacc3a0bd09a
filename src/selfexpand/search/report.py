"""A search's report, from the study in its storage (every process's trials): ``trials.csv``,
``search.md`` (the pick, the best per method, the command), Optuna's plots as PNG
(:mod:`selfexpand.search.plots`) and ``best/``, a copy of the run directory of the trial the search
picks (:mod:`selfexpand.search.pick`: the best on validation, unless it does not beat the defaults
by more than one standard error).

Each process writes the report when its trials are done, under the output folder's lock, so the
last one to finish leaves the whole study's. The best trial's directory is copied only where it is
(a trial run by a process on another machine is named by host and path instead). Every trial's run
directory is kept without its ``checkpoint/`` (a trial is never resumed): ``config.yaml``,
``summary.json``, ``history.jsonl``, ``model.safetensors`` and ``growth.png`` stay.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import shutil
from pathlib import Path

import optuna

from .options import SearchOptions
from .pick import pick_trial
from .plots import write_plots
from .space import METHOD_PARAM, settings_of
from .storage import OUT_LOCK, file_lock

__all__ = ["trial_info", "write_report", "trial_rows", "CSV_COLUMNS"]

log = logging.getLogger("selfexpand.search")

CSV_COLUMNS = ("number", "state", "method", "value", "values", "default", "epochs", "epochs_run", "params",
               "seconds", "pruned_at", "error", "host", "run_dir")
_STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def _best(study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def trial_info(study, trial) -> dict:
    """A finished trial in a few plain values (for the progress line), with the study's best so far."""
    attrs, best = trial.user_attrs, _best(study)
    return {"number": trial.number, "method": trial.params.get(METHOD_PARAM), "state": trial.state.name,
            "value": trial.value, "default": bool(attrs.get("default")), "seconds": attrs.get("seconds"),
            "pruned_at": attrs.get("pruned_at"), "pruned_seed": attrs.get("pruned_seed"),
            "error": attrs.get("error") or attrs.get("stopped"),
            "run_dir": attrs.get("run_dir"), "host": attrs.get("host"),
            "best": None if best is None else {"number": best.number, "value": best.value,
                                               "method": best.params.get(METHOD_PARAM)}}


def trial_rows(study) -> list[dict]:
    """One row per trial: :data:`CSV_COLUMNS`, then every searched setting (its value, or empty)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        row = {"number": t.number, "state": t.state.name, "method": t.params.get(METHOD_PARAM, ""),
               "value": t.value, "values": " ".join(str(v) for v in a.get("values", [])),
               "default": bool(a.get("default")), "epochs": a.get("epochs"),
               "epochs_run": a.get("epochs_run"), "params": a.get("params"), "seconds": a.get("seconds"),
               "pruned_at": a.get("pruned_at"), "error": a.get("error") or a.get("stopped"), "host": a.get("host"),
               "run_dir": a.get("run_dir")}
        rows.append({**row, **settings_of(t.params)})
    return rows


def _csv(rows: list[dict]) -> str:
    keys = sorted({k for r in rows for k in r} - set(CSV_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_COLUMNS, *keys], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in writer.fieldnames})
    return buffer.getvalue()


def _number(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _copy_best(best, out: Path) -> str | None:
    """``out/best``: a copy of the best trial's run directory (None: it is not on this machine)."""
    source = Path(best.user_attrs.get("run_dir") or "")
    if not (source / "config.yaml").is_file():
        return None
    target = out / "best"
    marker = target / "search_trial.json"
    if marker.is_file() and json.loads(marker.read_text()).get("number") == best.number:
        return str(target)
    tmp, old = out / f"best.{os.getpid()}.tmp", out / f"best.{os.getpid()}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(".lock", "checkpoint"))
    (tmp / "search_trial.json").write_text(json.dumps({"number": best.number, "run_dir": str(source)}) + "\n")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return str(target)


def _markdown(study, options: SearchOptions, storage: str, metric: str, rows: list[dict], picked, best_dir,
              plots) -> str:
    best, top, margin = picked
    direction = study.direction.name.lower()
    higher = direction == "maximize"
    counts = {s: sum(r["state"] == s for r in rows) for s in _STATES}
    command = " ".join(options.command or ["selfexpand", "search"])
    seeds = f"seed {options.seed}" if options.repeats == 1 else \
        f"seeds {options.seed}-{options.seed + options.repeats - 1} (a trial's value is the mean of its runs)"
    about = (f"Dataset {options.dataset}, {seeds}; every trial trains on the training split and is judged on the "
             f"validation split (its final model's {metric}, {'higher' if higher else 'lower'} is better); the "
             f"test split is never read. Storage: `{storage}`.")
    states = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
    lines = [f"# Search {options.study_name}", "", f"    {command}", "", about, "",
             f"Trials: {len(rows)} ({states}).", ""]
    lines += ["## The pick", ""]
    if best is None:
        lines += ["No trial is complete yet.", ""]
    else:
        where = f"`{best_dir}` (a copy of `{best.user_attrs.get('run_dir')}`)" if best_dir else \
            f"`{best.user_attrs.get('run_dir')}` on {best.user_attrs.get('host')}"
        config = Path(best_dir or best.user_attrs.get("run_dir") or ".") / "config.yaml"
        defaults = " (the method defaults)" if best.user_attrs.get("default") else ""
        found = (f"Trial {best.number}, method {best.params[METHOD_PARAM]}: validation {metric} "
                 f"{_number(best.value)}{defaults}; run directory {where}.")
        lines += [found, ""]
        if top is not best:
            kept = (f"The best on validation, trial {top.number} ({top.params[METHOD_PARAM]}, {_number(top.value)}), "
                    f"does not beat the best defaults by more than one standard error ({margin:.4f}): the defaults "
                    f"are kept (a winner among many noisy trials is rarely as good as its validation value).")
            lines += [kept, ""]
        lines += ["Train it again, and test it:", "", f"    selfexpand train --config {config}", ""]
        settings = settings_of(best.params)
        if settings:
            lines += ["| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in settings.items()] + [""]
    lines += ["## Best per method", "",
              f"| method | trials | complete | pruned | failed | best validation {metric} | trial | the defaults' |",
              "|---|---|---|---|---|---|---|---|"]
    pick = max if higher else min
    for method in options.methods:
        mine = [r for r in rows if r["method"] == method]
        done = [r for r in mine if r["state"] == "COMPLETE" and r["value"] is not None]
        top = pick(done, key=lambda r: r["value"]) if done else None
        default = next((r["value"] for r in done if r["default"]), None)
        lines.append(f"| {method} | {len(mine)} | {len(done)} | {sum(r['state'] == 'PRUNED' for r in mine)} | "
                     f"{sum(r['state'] == 'FAIL' for r in mine)} | {_number(top and top['value'])} | "
                     f"{top['number'] if top else '-'} | {_number(default)} |")
    lines += ["", "Every trial: `trials.csv` (its settings, state, value, run directory).", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    return "\n".join(lines)


def write_report(study, options: SearchOptions, storage: str, metric: str) -> dict | None:
    """Write the report into ``options.out_dir``. Returns the picked trial's ``trial_info`` with ``copy``
    (the folder of its copy; None where the trial ran on another machine), ``top`` (the best trial on
    validation, ``trial_info``) and ``margin``, or None when no trial is complete."""
    out = options.out_dir
    with file_lock(out / OUT_LOCK):
        rows = trial_rows(study)
        _write(out / "trials.csv", _csv(rows))
        best, top, margin = pick_trial(study, metric)
        best_dir = None if best is None else _copy_best(best, out)
        plots = write_plots(study, out, options.methods)
        _write(out / "search.md", _markdown(study, options, storage, metric, rows, (best, top, margin), best_dir,
                                            plots))
    if best is None:
        return None
    return {**trial_info(study, best), "copy": best_dir, "top": trial_info(study, top), "margin": margin}
