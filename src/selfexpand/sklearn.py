"""scikit-learn estimators: :class:`GrowingClassifier` and :class:`GrowingRegressor`.

``fit(X, y)`` grows a network on the arrays in memory, exactly as ``selfexpand train`` grows one on
a CSV file: the method's ``table`` row (its ``*`` row when it has none) with the estimator's
arguments over it (:func:`selfexpand.presets.resolve_config`), the method's parts
(:func:`~selfexpand.presets.build_method`), its start network (:func:`~selfexpand.presets.build_start`)
and :meth:`Trainer.from_settings <selfexpand.train.trainer.Trainer.from_settings>`. No run directory is
written. The training data is split into training and validation rows (``val_fraction``, stratified
for classes where possible) by ``random_state``, unless ``fit`` is given its own validation rows
(``X_val``, ``y_val``); the growth triggers watch the validation split.

**Standardisation is inside** (``standardize=True``, the default): features are standardised with the
training split's mean and standard deviation (the statistics a CLI run stores in
``preprocessing.json``), and regression targets too, ``predict`` mapping outputs back to the target's
unit. A ``StandardScaler`` in front (a ``Pipeline``) is harmless and unneeded. ``standardize=False``
uses features and targets as given (already scaled, e.g. as a dataset's own preprocessing does).

After ``fit``: ``model_`` (the grown network exported to plain PyTorch, :meth:`GrowableNet.export`,
on the CPU, in eval mode), ``history_`` (the run's epoch and growth records, as ``history.jsonl``),
``summary_`` (as ``summary.json``, without test figures: there is no test split), ``n_features_in_``,
``feature_names_in_`` (X a DataFrame with string column names), ``classes_`` (classifier) and
``n_outputs_`` (regressor). A fitted estimator pickles (``model_`` is a plain module); run
checkpoints stay pickle-free, this is scikit-learn's own way of storing an estimator.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from .data.registry import assemble_dataset
from .errors import TrainingStopped
from .estimate import check_start_fits
from .presets import TABLE_ROW, build_method, build_start, resolve_config
from .report.inactivity import inactivity
from .report.summary import summarize
from .runconfig import RunConfig, check_run_config
from .runs import check_training
from .train.callbacks import LoggingCallback
from .train.metrics import HIGHER_IS_BETTER
from .train.progress import ProgressBar
from .train.recorders import InactivityRecorder, SizeControlRecorder
from .train.trainer import Trainer

__all__ = ["GrowingClassifier", "GrowingRegressor"]

log = logging.getLogger("selfexpand.sklearn")

_PREDICT_ROWS = 4096  # rows per forward pass in predict


class _GrowingEstimator(BaseEstimator):
    """What the two estimators share; ``_task`` says which one this is."""

    _task = "classification"

    def __init__(self, method="edge", *, epochs=None, lr=None, batch_size=None, max_params=None, hidden=None,
                 settings=None, val_fraction=0.2, standardize=True, random_state=None, device="cpu", callbacks=None,
                 verbose=0):
        self.method = method
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.max_params = max_params
        self.hidden = hidden
        self.settings = settings
        self.val_fraction = val_fraction
        self.standardize = standardize
        self.random_state = random_state
        self.device = device
        self.callbacks = callbacks
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def _seed(self) -> int:
        """``random_state`` as the run's seed: an int is the seed itself (``--seed``), else one is drawn."""
        rs = self.random_state
        if isinstance(rs, numbers.Integral) and not isinstance(rs, bool) and 0 <= rs < 2 ** 32:
            return int(rs)
        return int(check_random_state(rs).randint(2 ** 31 - 1))

    def _config(self, seed: int) -> tuple[RunConfig, dict]:
        """The run's configuration and resolved settings, every argument checked (ConfigError)."""
        settings = self.settings if self.settings is not None else {}
        if not isinstance(settings, dict):
            raise TypeError(f"settings must be a dict of method settings or None, got {type(settings).__name__}")
        config = RunConfig(method=self.method, dataset=TABLE_ROW, epochs=self.epochs, batch_size=self.batch_size,
                           lr=self.lr, seed=seed, val_fraction=self.val_fraction, max_params=self.max_params,
                           device=self.device, settings=dict(settings))
        check_run_config(config)
        overrides = dict(settings)
        for name in ("epochs", "batch_size", "lr", "max_params"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        if self.hidden is not None:
            overrides["hidden"] = list(self.hidden)
        resolved = resolve_config(self.method, TABLE_ROW, overrides)
        check_training(resolved, config)
        return config, resolved

    def _validation(self, X, X_val, y_val, what: str):
        """``fit``'s own validation rows, checked against ``X``: ``(X_val, y_val)`` or None."""
        if (X_val is None) != (y_val is None):
            raise ValueError("pass both X_val and y_val, or neither")
        if X_val is None:
            return None
        X_val = check_array(X_val, dtype=[np.float64, np.float32])
        if X_val.shape[1] != X.shape[1]:
            raise ValueError(f"X_val has {X_val.shape[1]} features, X has {X.shape[1]}")
        y_val = column_or_1d(y_val) if what == "labels" else np.asarray(y_val, dtype=np.float64)
        if len(y_val) != len(X_val):
            raise ValueError(f"X_val has {len(X_val)} rows but y_val {len(y_val)}")
        if what != "labels" and not np.isfinite(y_val).all():
            raise ValueError("y_val holds NaN or infinity")
        return X_val, y_val

    def _dataset(self, X: np.ndarray, y: np.ndarray, seed: int, meta: dict):
        """A :class:`~selfexpand.data.Dataset` of the arrays: split, standardised (no test rows)."""
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise TypeError(f"standardize must be True or False, got {self.standardize!r}")
        standardize = bool(self.standardize)
        meta = {"task": self._task, "standardize": standardize,
                "standardize_target": standardize and self._task == "regression",
                "preprocessing": {"input_shape": [X.shape[1]]}, **meta}
        # one row stands in for the test set (preprocessing cannot reshape zero rows); it is dropped after
        data = assemble_dataset("arrays", (X, y, X[:1], y[:1], meta), seed, self.val_fraction)
        return dataclasses.replace(data, x_test=data.x_test[:0], y_test=data.y_test[:0])

    def _train(self, X: np.ndarray, y: np.ndarray, meta: dict):
        n = X.shape[0]
        if n < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples (training and validation rows), "
                             f"got n_samples = {n}")
        seed = self._seed()
        config, settings = self._config(seed)
        data = self._dataset(X, y, seed, meta)
        if data.x_train.shape[0] == 0 or data.x_val.shape[0] == 0:
            raise ValueError(f"val_fraction={self.val_fraction} leaves no training or no validation rows of "
                             f"n_samples = {n}")
        method = build_method(self.method, settings)
        check_start_fits(settings, data.n_features, data.n_outputs, device=config.device,
                         n_train=int(data.x_train.shape[0]))
        model = build_start(self.method, settings, data, seed)
        shown = [ProgressBar()] if self.verbose else []
        shown += [LoggingCallback()] if self.verbose and self.verbose > 1 else []
        trainer = Trainer.from_settings(method, settings, seed=seed, device=config.device,
                                        callbacks=[InactivityRecorder(), SizeControlRecorder(), *shown,
                                                   *(self.callbacks or [])])
        counts_start = model.counts()
        result = trainer.fit(model, data)
        if trainer.failure is not None:
            failure = trainer.failure
            raise TrainingStopped(f"training stopped at epoch {failure['epoch']}: {failure['reason']}; fit again "
                                  f"with a smaller lr (lr={settings['lr']:g})")
        net = result.model
        net.eval()
        metric = trainer.ctx.metric_name
        records = [dict(r) for r in result.history.records]
        self.summary_ = summarize(
            method=self.method, dataset="arrays", seed=seed, history=records, counts_start=counts_start,
            counts_final=net.counts(), metric_name=metric, higher_is_better=HIGHER_IS_BETTER[metric],
            test_metric=None, train_seconds=result.train_seconds, growth_seconds=result.growth_seconds,
            inactivity=inactivity(net, data.x_val),
            extra={"val_metric": trainer.ctx.evaluate("val")[metric], "settings": settings,
                   "n_train": int(data.x_train.shape[0]), "n_val": int(data.x_val.shape[0])})
        self.history_ = records
        self.model_ = net.export().cpu().eval()
        self.preprocessing_ = data.preprocessing
        return self

    # ------------------------------------------------------------------ predict
    @torch.no_grad()
    def _outputs(self, X) -> torch.Tensor:
        """The network's outputs for ``X`` (computed in float64), ``X`` checked against ``fit``'s."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        from .data import preprocess_features

        # in float64: a row's output then does not depend on the rows computed with it (float32 matrix
        # products do, by about 1e-7, which scikit-learn's invariance checks see)
        model = copy.deepcopy(self.model_).double()
        x = preprocess_features(self.preprocessing_, X).double()
        parts = [model(x[i:i + _PREDICT_ROWS]) for i in range(0, x.shape[0], _PREDICT_ROWS)]
        return torch.cat(parts) if parts else torch.zeros((0, self.preprocessing_["n_outputs"]), dtype=torch.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class GrowingClassifier(ClassifierMixin, _GrowingEstimator):
    """A classifier whose network grows while it trains (any ``selfexpand`` method).

    Args:
        method: the growth method (``selfexpand methods`` lists them; default ``edge``).
        epochs, lr, batch_size, max_params: training settings (None: the method's ``table`` row).
        hidden: the start network's hidden widths, e.g. ``(16,)`` (None: the method's).
        settings: more settings of the method by name (``{"tau": 0.5, "optimizer": "adamw"}``), as
            ``selfexpand train --set``; stored untouched.
        val_fraction: fraction of the training rows held out for validation (growth decisions), unless
            ``fit`` is given ``X_val`` and ``y_val``.
        standardize: standardise features (and regression targets) with the training split's mean and
            standard deviation (True); False uses them as given.
        random_state: seed of the split, the start values, the data order and growth (an int: the
            same fit every time; None: a new seed per fit).
        device: ``cpu`` or ``cuda``.
        callbacks: :class:`selfexpand.train.callbacks.Callback` instances (e.g.
            :class:`selfexpand.train.tensorboard.TensorBoardLogger`), called after the recorders.
        verbose: 0 quiet; 1 a progress bar (tqdm, on stderr); 2 also each epoch logged at INFO.

    Features are standardised inside by default (the training split's mean and standard deviation); classes may be
    any labels (strings too). See the module docstring for the fitted attributes.

    Raises:
        ConfigError: from ``fit``, an unknown method or setting, or a value its rule refuses.
        TrainingStopped: from ``fit``, the loss became non-finite (try a smaller ``lr``).
    """

    _task = "classification"

    def fit(self, X, y, X_val=None, y_val=None):
        """Grow and train a network on ``X`` (``(n_samples, n_features)``) and labels ``y``; returns self.

        ``X_val``, ``y_val``: validation rows for the growth decisions (then every row of ``X`` trains
        and ``val_fraction`` is not used); their labels must be among ``y``'s.
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"GrowingClassifier needs at least 2 classes in y, got 1 class ({classes[0]!r})")
        meta = {"n_outputs": len(classes)}
        validation = self._validation(X, X_val, y_val, "labels")
        if validation is not None:
            unseen = np.setdiff1d(validation[1], classes)
            if len(unseen):
                raise ValueError(f"y_val holds labels that y does not: {unseen[:5].tolist()}")
            meta["validation"] = (validation[0], np.searchsorted(classes, validation[1]).astype(np.int64))
        self.classes_ = classes
        return self._train(X, encoded.astype(np.int64), meta)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (softmax of the outputs), columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        return torch.softmax(self._outputs(X), dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row (a label of ``classes_``)."""
        check_is_fitted(self, "model_")
        return self.classes_[self._outputs(X).argmax(1).numpy()]


class GrowingRegressor(RegressorMixin, _GrowingEstimator):
    """A regressor whose network grows while it trains (any ``selfexpand`` method).

    Takes the arguments of :class:`GrowingClassifier`. ``y`` may have several columns
    (``(n_samples, n_outputs)``). Features and targets are standardised inside (training split); the
    history's losses and metric are in standardised units, ``predict`` returns the target's unit.
    """

    _task = "regression"

    def fit(self, X, y, X_val=None, y_val=None):
        """Grow and train a network on ``X`` and targets ``y`` (one or several columns); returns self.

        ``X_val``, ``y_val``: validation rows for the growth decisions (then every row of ``X`` trains
        and ``val_fraction`` is not used), ``y_val`` shaped like ``y``.
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=True, multi_output=True)
        y = np.asarray(y, dtype=np.float64)
        meta = {}
        validation = self._validation(X, X_val, y_val, "targets")
        if validation is not None:
            if validation[1].shape[1:] != y.shape[1:]:
                raise ValueError(f"y_val has shape {validation[1].shape}, y {y.shape}: they must match past the rows")
            meta["validation"] = validation
        self.n_outputs_ = 1 if y.ndim == 1 else int(y.shape[1])
        self._y_ndim = y.ndim
        return self._train(X, y, meta)

    def predict(self, X) -> np.ndarray:
        """Predicted targets in their own unit: ``(n_samples,)`` when ``y`` had one dimension."""
        from .data import decode_targets

        check_is_fitted(self, "model_")
        out = decode_targets(self.preprocessing_, self._outputs(X)).numpy()
        return out[:, 0] if self._y_ndim == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
