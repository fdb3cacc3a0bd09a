"""``selfexpand train``, ``resume``, ``inspect``, ``predict`` and ``methods``: each reads its parsed
arguments, calls the library and prints. torch is imported inside the commands that need it, so the
method listing (``selfexpand methods``) starts without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .cli_output import prediction_lines, summary_lines, summary_warnings, write_predictions
from .cli_parser import UsageError, parse_sets

__all__ = ["train", "resume", "inspect_run", "predict", "methods", "set_threads", "check_out"]

_TRAIN_OPTIONS = ("method", "dataset", "target", "test_file", "task", "data_dir", "epochs", "batch_size", "lr",
                  "seed", "val_fraction", "max_params", "grow_until", "device", "dtype", "nproc", "front")


def check_out(out) -> None:
    """An ``--out`` given as empty text is refused (it would name the current folder)."""
    if out is not None and not str(out).strip():
        raise UsageError("--out must not be empty")


def _config_from(args):
    from .runs import RunConfig, twin_config

    check_out(args.out)
    if args.twin_of:
        ignored = [f"--{k.replace('_', '-')}" for k in _TRAIN_OPTIONS + ("config", "trigger", "selector", "initializer")
                   if getattr(args, k) is not None] + (["--set"] if args.set else [])
        if ignored:
            raise UsageError(f"--twin-of reuses the run's own settings; it takes only --out, --threads, "
                             f"--tensorboard and --quiet, got {' '.join(ignored)}")
        return twin_config(args.twin_of, out=args.out)
    values: dict = {}
    if args.config:
        values = _read_yaml(args.config)
    settings = values.pop("settings", None) or {}
    if not isinstance(settings, dict):
        raise UsageError(f"config {args.config!r}: settings must be a mapping of name: value, "
                         f"got {type(settings).__name__}")
    settings = dict(settings)
    known = set(RunConfig.__dataclass_fields__) - {"settings", "twin_of"}
    for key in list(values):
        if key not in known:
            settings[key] = values.pop(key)  # method settings may sit at the top level too
    settings.update(parse_sets(args.set))
    for key in (*_TRAIN_OPTIONS, "out"):
        value = getattr(args, key)
        if value is not None:
            values[key] = value
    check_out(values.get("out"))
    for kind in ("trigger", "selector", "initializer"):  # method settings: stored with the run
        if getattr(args, kind) is not None:
            settings[kind] = getattr(args, kind)
    try:
        return RunConfig(**values, settings=settings)
    except TypeError as exc:
        raise UsageError(f"bad configuration: {exc}") from None


def _read_yaml(path: str) -> dict:
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read config {path!r}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"config {path!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise UsageError(f"config {path!r} must be a mapping of option: value, got {type(values).__name__}")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def set_threads(args, small: bool = True) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    elif small:
        torch.set_num_threads(1)


def _small_dataset(dataset) -> bool:
    """Digits and the user's tables train fastest on one thread; the rest use torch's default.

    Behind a conv front too: on digits' 8x8 images ``conv-small`` took 0.45 s per epoch on one
    thread against 1.5-19 s on two (2-core machine, shared). Tables cannot have a front (no image
    shape); every image dataset with a front keeps torch's default."""
    return str(dataset) == "digits" or str(dataset).lower().endswith((".csv", ".npz"))


def _run_config_value(run_dir: str, key: str):
    """``key`` of a run directory's ``config.yaml`` (None when absent or unreadable: resume reports it)."""
    import yaml

    try:
        config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8 text
        return None
    return config.get(key) if isinstance(config, dict) else None


def _run_dataset(run_dir: str):
    """The dataset of a run directory (None when unreadable)."""
    return _run_config_value(run_dir, "dataset")


def _progress(args) -> list:
    """The CLI's callbacks: the progress bar (unless ``--quiet``) and the TensorBoard logger
    (``--tensorboard DIR``; a missing ``tensorboard`` package is refused here, before the run starts)."""
    callbacks = []
    if getattr(args, "tensorboard", None) is not None:
        if not str(args.tensorboard).strip():
            raise UsageError("--tensorboard must name a folder")
        from .train.tensorboard import TensorBoardLogger

        callbacks.append(TensorBoardLogger(args.tensorboard))
    if args.quiet:
        return callbacks
    from .train.progress import ProgressBar

    return [ProgressBar(), *callbacks]


def _print_summary(summary: dict, run_dir) -> None:
    from .report.summary import SUMMARY_TABLE_KEYS

    for line in summary_lines(summary, run_dir, SUMMARY_TABLE_KEYS):
        print(line)
    sys.stdout.flush()
    for line in summary_warnings(summary):
        print(line, file=sys.stderr)


def train(args, argv) -> int:
    from .cli_launch import environment_size, launch, worker_rank
    from .presets import method_names
    from .runs import train_run

    config = _config_from(args)
    if config.method not in method_names():
        raise UsageError(f"unknown method {config.method!r}; known methods: {', '.join(method_names())}")
    if config.nproc > 1 and environment_size() == 1:  # start the workers, each runs this command
        return launch(config.nproc, argv if argv[:1] == ["train"] else ["train", *argv])
    set_threads(args, small=_small_dataset(config.dataset))
    run_dir, summary = train_run(config, callbacks=_progress(args) if worker_rank() == 0 else [],
                                 command=["selfexpand", *argv])
    if summary is not None:  # rank 0, or a single process
        _print_summary(summary, run_dir)
    return 0


def resume(args, argv) -> int:
    from .cli_launch import environment_size, launch, worker_rank
    from .runs import resume_run

    nproc = _run_nproc(args.run_dir)
    if nproc > 1 and environment_size() == 1:  # a data-parallel run resumes on as many workers
        return launch(nproc, argv)
    set_threads(args, small=_small_dataset(_run_dataset(args.run_dir)))
    try:
        run_dir, summary = resume_run(args.run_dir, epochs=args.epochs, lr=args.lr, device=args.device,
                                      callbacks=_progress(args) if worker_rank() == 0 else [],
                                      command=["selfexpand", *argv])
    except KeyboardInterrupt as exc:  # the directory is known even where the library did not say it
        if getattr(exc, "run_dir", None) is None:
            exc.run_dir = args.run_dir
        raise
    if summary is not None:
        _print_summary(summary, run_dir)
    return 0


def _run_nproc(run_dir: str) -> int:
    """The ``nproc`` a run directory was made with (1 when absent or unreadable)."""
    nproc = _run_config_value(run_dir, "nproc")
    return nproc if isinstance(nproc, int) and not isinstance(nproc, bool) and nproc > 1 else 1


def inspect_run(args, argv) -> int:
    from .report.describe import describe_run

    print(describe_run(args.run_dir))
    return 0


def predict(args, argv) -> int:
    from .runs import predict_file

    check_out(args.out)
    out = Path(args.out) if args.out is not None else None
    if out is not None and (out.exists() or out.is_symlink()):
        raise UsageError(f"--out {str(out)!r} exists (nothing is overwritten); name a new file")
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")
    if args.proba:
        labels, probabilities, classes = predict_file(args.run_dir, args.file, proba=True)
    else:
        labels, probabilities, classes = predict_file(args.run_dir, args.file), None, None
    if out is None:
        for line in prediction_lines(labels, probabilities, classes):
            print(line)
        return 0
    rows = write_predictions(out, labels, probabilities, classes)
    print(f"{rows} predictions written to {out}")
    return 0


def methods(args, argv) -> int:
    """``selfexpand methods``: every method in a line (no torch: :mod:`selfexpand.catalog`); with a
    name, its parts and settings; ``--parts``: the registered parts (with a name: that method's)."""
    if args.parts:
        return _parts(args.name)
    if args.name is None:
        from .catalog import METHODS

        width = max(len(n) for n in METHODS)
        for name, summary in METHODS.items():
            print(f"{name:<{width}}  {summary}")
        return 0
    from .presets import get_preset, method_settings

    preset = get_preset(args.name)
    print(f"{preset.name}: {preset.summary}")
    print(f"row: {preset.row_key(args.dataset)}  (rows: {', '.join(preset.rows)})")
    owner = None
    for label, s, value in method_settings(args.name, args.dataset):
        if label != owner:
            owner = label
            print(f"\n{label}")
        print(f"  {s.name} = {value!r}\n      {s.describe()}")
    return 0


def _parts(name: str | None) -> int:
    from .presets import get_preset
    from .strategies import PART_KINDS, part_class, part_names

    if name is None:
        chosen = [(kind, part) for kind in PART_KINDS for part in part_names(kind)]
    else:
        preset = get_preset(name)
        chosen = [(kind, part) for kind, part in preset.parts().items()] + [("helper", h) for h in preset.helpers]
        print(f"{preset.name}: {preset.summary}")
    for kind, part in chosen:
        if part is None:
            print(f"{kind:<12} {'(none)':<20}")
            continue
        settings = ", ".join(s.name for s in part_class(kind, part).declared()) or "no settings"
        print(f"{kind:<12} {part:<20} {settings}")
    return 0
