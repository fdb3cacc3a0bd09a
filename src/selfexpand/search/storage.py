"""Where a study lives, and how processes agree on it.

``--storage`` is an Optuna RDB URL (``sqlite:///path/study.db``, ``postgresql://...``,
``mysql+pymysql://...``), a path ending in ``.db`` / ``.sqlite`` (an SQLite file), or a path ending in
``.log`` / ``.journal`` (Optuna's journal file, for file systems where SQLite's locking is unsafe);
none: ``OUT/study.db``. An RDB storage runs Optuna's heartbeat: a trial whose process died (killed,
machine lost) is marked FAIL by the next process that starts a trial, and is not counted.

**Creating a study and its default trials once.** Every process calls :func:`create_or_join`. Only
one can create the study: the storage refuses a second study of the same name (an RDB's unique
constraint; the journal's ordered log), and the others load it. The creator alone stores the
study's options and enqueues the methods' defaults, then marks the study ready
(``selfexpand.ready``). Enqueued trials are handed out one each: a process takes a waiting trial
with an update that succeeds only while it is still waiting. A process that joins before the
creator has marked the study ready waits for the mark (up to a minute), so it never judges the
options of a half-made study. For a local file (SQLite, journal) the whole step runs under an
exclusive lock on ``FILE.search-lock``, which also keeps two processes from creating the tables of a new
file at once (on a database server, a process whose first opening collides with another's tries
again). A creator that dies between creating the study and marking it leaves a study no one
joins; the error says so (start again with another ``--study`` name).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna

from ..errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["StorageSpec", "storage_spec", "open_storage", "create_or_join", "file_lock", "OPTIONS_ATTR", "OUT_LOCK",
           "STORAGE_LOCK_SUFFIX"]

log = logging.getLogger("selfexpand.search")

OPTIONS_ATTR = "selfexpand.options"
OUT_LOCK = ".search.lock"  # the output folder's lock: its setup and its report
#: the suffix of a storage file's lock (not ``.lock``: Optuna's journal file takes FILE.lock itself)
STORAGE_LOCK_SUFFIX = ".search-lock"
READY_ATTR = "selfexpand.ready"
JOURNAL_SUFFIXES = (".log", ".journal")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
HEARTBEAT_SECONDS, GRACE_SECONDS = 30, 120
JOIN_WAIT_SECONDS = 60.0
OPEN_ATTEMPTS = 3


@dataclass(frozen=True)
class StorageSpec:
    """A storage as given: ``url`` (an RDB) or ``journal`` (a file); ``path`` the local file, if any."""

    text: str
    url: str | None = None
    journal: Path | None = None
    path: Path | None = None


def storage_spec(storage: str | None, out: Path) -> StorageSpec:
    """The storage ``--storage`` names (None: ``OUT/study.db``).

    Raises:
        ConfigError: an in-memory SQLite database, or text that is neither a URL nor such a file.
    """
    if storage is None:
        path = (Path(out) / "study.db").resolve()
        return StorageSpec(f"sqlite:///{path}", url=f"sqlite:///{path}", path=path)
    text = str(storage).strip()
    if "://" in text:
        if text.startswith("sqlite:"):
            # sqlite:///relative/path.db, sqlite:////absolute/path.db (a query after "?" is the driver's)
            name = text[len("sqlite:///"):].split("?", 1)[0] if text.startswith("sqlite:///") else ""
            if not name or name == ":memory:":
                raise ConfigError(f"storage {text!r} is an in-memory database, which one process alone can see; "
                                  f"name a file (sqlite:///path/study.db)")
            return StorageSpec(text, url=text, path=Path(name).resolve())
        return StorageSpec(text, url=text)
    if text.endswith(JOURNAL_SUFFIXES):
        path = Path(text).expanduser().resolve()
        return StorageSpec(text, journal=path, path=path)
    if text.endswith(SQLITE_SUFFIXES):
        path = Path(text).expanduser().resolve()
        return StorageSpec(text, url=f"sqlite:///{path}", path=path)
    raise ConfigError(f"storage must be an Optuna RDB URL (sqlite:///path/study.db, postgresql://user@host/db), an "
                      f"SQLite file ending in {', '.join(SQLITE_SUFFIXES)} or a journal file ending in "
                      f"{' or '.join(JOURNAL_SUFFIXES)}, got {text!r}")


def open_storage(spec: StorageSpec, attempts: int = 1):
    """The Optuna storage of ``spec``; a database error that may pass (another process creating the
    tables of a database server at the same moment) is tried again, ``attempts`` times in all.

    Raises:
        ConfigError: it cannot be opened (a missing folder, an unknown database kind, a server that
            does not answer), with the reason.
    """
    for attempt in range(attempts):
        try:
            return _open(spec)
        except Exception as exc:  # sqlalchemy's and the drivers' errors have no common base we could name
            if attempt + 1 < attempts and _may_pass(exc):
                time.sleep(1.0 + attempt)
                continue
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise ConfigError(f"storage {spec.text!r} cannot be opened: {reason}") from None


def _open(spec: StorageSpec):
    if spec.journal is not None:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(spec.journal)))
    kwargs = {"connect_args": {"timeout": 60}} if spec.url.startswith("sqlite") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeat is experimental in some versions
        return optuna.storages.RDBStorage(spec.url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
                                          grace_period=GRACE_SECONDS)


def _may_pass(exc: Exception) -> bool:
    """A database's own error (a lost race, a busy server), not a bad URL or a missing driver."""
    try:
        from sqlalchemy.exc import DBAPIError
    except ImportError:  # pragma: no cover - Optuna's RDB storage needs sqlalchemy
        return False
    return isinstance(exc, DBAPIError)


@contextlib.contextmanager
def file_lock(path: Path | None):
    """An exclusive ``flock`` on ``path`` for the block (nothing for None or without ``fcntl``)."""
    if path is None or fcntl is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _json(value):
    return json.loads(json.dumps(value))


def create_or_join(spec: StorageSpec, name: str, identity: dict, direction: str, defaults: list[dict], sampler,
                   pruner):
    """``(study, created)``: the storage of ``spec`` opened and the study ``name`` in it, created with
    ``identity`` stored and ``defaults`` (trial parameters) enqueued when it is new, else loaded and
    its options checked.

    Raises:
        ConfigError: the storage cannot be opened; the study exists with other options or direction,
            or is not a selfexpand search.
    """
    if spec.path is not None and not spec.path.parent.is_dir():
        raise ConfigError(f"storage {spec.text!r} cannot be opened: folder {str(spec.path.parent)!r} does not exist")
    lock = None if spec.path is None else spec.path.with_name(spec.path.name + STORAGE_LOCK_SUFFIX)
    with file_lock(lock):
        storage = open_storage(spec, 1 if spec.path is not None else OPEN_ATTEMPTS)
        try:
            study = optuna.create_study(storage=storage, study_name=name, direction=direction, sampler=sampler,
                                        pruner=pruner)
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
            _check_joined(study, spec, name, _json(identity), direction)
            return study, False
        study.set_user_attr(OPTIONS_ATTR, _json(identity))
        for params in defaults:
            study.enqueue_trial(params, user_attrs={"default": True})
        study.set_user_attr(READY_ATTR, True)
        log.info("study %s created in %s; %d default trials enqueued", name, spec.text, len(defaults))
        return study, True


def _check_joined(study, spec: StorageSpec, name: str, identity: dict, direction: str) -> None:
    deadline = time.monotonic() + JOIN_WAIT_SECONDS
    while not study.user_attrs.get(READY_ATTR):
        if OPTIONS_ATTR not in study.user_attrs and study.trials:
            raise ConfigError(f"study {name!r} in {spec.text} is not a selfexpand search (no options stored); "
                              f"give another --study name")
        if time.monotonic() > deadline:
            raise ConfigError(f"study {name!r} in {spec.text} was created but never made ready (its first process "
                              f"died while enqueuing the defaults?); give another --study name")
        time.sleep(0.5)
    stored = study.user_attrs.get(OPTIONS_ATTR)
    if stored != identity:
        differ = [f"{k}: {stored.get(k)!r} there, {identity.get(k)!r} here" for k in identity
                  if stored.get(k) != identity.get(k)]
        raise ConfigError(f"study {name!r} in {spec.text} searches with other options ({'; '.join(differ)}); give the "
                          f"same options, or another --study / --out")
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study {name!r} in {spec.text} {study.direction.name.lower()}s its value; this search "
                          f"would {direction} it")
