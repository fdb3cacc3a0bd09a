"""``selfexpand.sklearn``: scikit-learn's own estimator checks, and the estimators in the places users put
them (pipelines, grid search, clone, pickle), string classes, determinism, regression in the target's
unit. Fits are tiny (20 epochs on a few hundred rows)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_regression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from selfexpand.errors import ConfigError
from selfexpand.sklearn import GrowingClassifier, GrowingRegressor
from selfexpand.train.callbacks import Callback

FAST = dict(epochs=20, random_state=0)


@parametrize_with_checks([GrowingClassifier(**FAST), GrowingRegressor(**FAST)])
def test_scikit_learn_estimator_checks(estimator, check):
    """Every check passes; those needing pandas or SCIPY_ARRAY_API skip themselves when absent."""
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(300, centers=3, n_features=4, random_state=0)
    return 50 + 10 * x, np.array(["red", "green", "blue"])[y]  # offset and scaled features, string classes


@pytest.fixture(scope="module")
def fitted(blobs):
    before = torch.get_num_threads()  # one thread, as conftest gives each test (module fixtures come first)
    torch.set_num_threads(1)
    try:
        return GrowingClassifier(**FAST).fit(*blobs)
    finally:
        torch.set_num_threads(before)


def test_a_fit_learns_string_classes_and_keeps_its_record(blobs, fitted):
    x, y = blobs
    assert list(fitted.classes_) == ["blue", "green", "red"] and fitted.n_features_in_ == 4
    assert set(fitted.predict(x)) <= set(fitted.classes_) and fitted.predict(x).dtype == y.dtype
    assert fitted.score(x, y) > 0.9
    proba = fitted.predict_proba(x)
    assert proba.shape == (300, 3) and np.allclose(proba.sum(1), 1)
    assert (fitted.classes_[proba.argmax(1)] == fitted.predict(x)).all()
    epochs = [r for r in fitted.history_ if r["type"] == "epoch"]
    assert len(epochs) == 20 and fitted.summary_["epochs"] == 20
    assert fitted.summary_["params_final"] > fitted.summary_["params_start"]  # it grew
    assert fitted.summary_["n_train"] == 240 and fitted.summary_["n_val"] == 60  # val_fraction 0.2
    modules = {type(m).__module__.split(".")[0] for m in fitted.model_.modules()}
    assert modules <= {"torch"}, modules  # the exported plain network


def test_pickle_round_trip_predicts_the_same(blobs, fitted):
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict_proba(blobs[0]), fitted.predict_proba(blobs[0]))
    assert again.history_ == fitted.history_


def test_the_same_random_state_gives_the_same_fit(blobs, fitted):
    again = GrowingClassifier(**FAST).fit(*blobs)
    np.testing.assert_array_equal(again.predict_proba(blobs[0]), fitted.predict_proba(blobs[0]))
    assert [r.get("params") for r in again.history_] == [r.get("params") for r in fitted.history_]
    other = GrowingClassifier(epochs=20, random_state=1).fit(*blobs)
    assert not np.array_equal(other.predict_proba(blobs[0]), fitted.predict_proba(blobs[0]))


def test_clone_and_set_params(blobs, fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "model_")
    copy.set_params(epochs=3, hidden=(5,), settings={"tau": 0.5})
    copy.fit(*blobs)
    assert copy.summary_["epochs"] == 3 and copy.summary_["settings"]["tau"] == 0.5
    assert copy.summary_["params_start"] == 4 * 5 + 5 + 5 * 3 + 3  # the hidden=(5,) start network
    assert copy.settings == {"tau": 0.5}  # stored untouched


def test_in_a_pipeline_with_a_scaler(blobs, fitted):
    pipe = make_pipeline(StandardScaler(), GrowingClassifier(**FAST)).fit(*blobs)
    assert pipe.score(*blobs) > 0.9
    # standardisation is inside: a scaler in front changes the input only by float rounding
    np.testing.assert_allclose(pipe.predict_proba(blobs[0]), fitted.predict_proba(blobs[0]), atol=1e-4)


def test_grid_search_over_epochs(blobs):
    search = GridSearchCV(GrowingClassifier(random_state=0), {"epochs": [1, 10]}, cv=2).fit(*blobs)
    assert search.best_params_ == {"epochs": 10}
    assert search.best_estimator_.summary_["epochs"] == 10


def test_callbacks_are_called(blobs):
    class Count(Callback):
        def __init__(self):
            self.epochs = 0

        def on_epoch_end(self, ctx, record, **kwargs):
            self.epochs += 1

    counter = Count()
    GrowingClassifier(epochs=3, random_state=0, callbacks=[counter]).fit(*blobs)
    assert counter.epochs == 3


def test_the_regressor_predicts_in_the_targets_unit():
    x, y = make_regression(200, 5, noise=1.0, random_state=0)
    y = 1000 + 5 * y  # far from standardised
    reg = GrowingRegressor(**FAST).fit(x, y)
    assert reg.predict(x).shape == (200,) and reg.score(x, y) > 0.9 and reg.n_outputs_ == 1
    assert abs(reg.predict(x).mean() - 1000) < 100
    two = GrowingRegressor(**FAST).fit(x, np.column_stack([y, -y]))
    assert two.predict(x).shape == (200, 2) and two.n_outputs_ == 2 and two.score(x, np.column_stack([y, -y])) > 0.9


@pytest.mark.parametrize("params, match", [
    (dict(method="no-such-method"), "no-such-method"),
    (dict(settings={"no_such_setting": 1}), "no_such_setting"),
    (dict(settings={"tau": 2.0}), "tau"),
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(val_fraction=1.5), r"val_fraction must be a number in \(0, 1\)"),
    (dict(hidden=(0,)), "hidden"),
])
def test_bad_settings_are_refused_at_fit(blobs, params, match):
    with pytest.raises(ConfigError, match=match):
        GrowingClassifier(**params).fit(*blobs)


def test_a_single_class_is_refused(blobs):
    with pytest.raises(ValueError, match="at least 2 classes"):
        GrowingClassifier(**FAST).fit(blobs[0], np.array(["red"] * 300))


def test_feature_names_of_a_dataframe(blobs):
    pd = pytest.importorskip("pandas", reason="pandas is not installed (feature_names_in_ needs a DataFrame)")
    frame = pd.DataFrame(blobs[0], columns=["a", "b", "c", "d"])
    model = GrowingClassifier(epochs=2, random_state=0).fit(frame, blobs[1])
    assert list(model.feature_names_in_) == ["a", "b", "c", "d"]


# ------------------------------------------------------------------ scikit-learn's bundled datasets
def test_pipeline_on_the_wine_data():
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    x, y = load_wine(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=0, stratify=y)
    pipe = make_pipeline(StandardScaler(), GrowingClassifier(epochs=30, random_state=0)).fit(x_train, y_train)
    assert pipe.score(x_test, y_test) > 0.85  # 3 classes: chance is about 0.4


def test_grid_search_over_method_and_epochs_on_iris():
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    grid = {"method": ["zero", "edge"], "epochs": [1, 30]}
    search = GridSearchCV(GrowingClassifier(random_state=0), grid, cv=3).fit(x, y)
    assert len(search.cv_results_["params"]) == 4 and search.best_params_["epochs"] == 30
    assert search.best_estimator_.summary_["epochs"] == 30 and search.best_score_ > 0.8
    methods = {p["method"]: s for p, s in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"])}
    assert set(methods) == {"zero", "edge"}


def test_cross_val_score_of_the_regressor_on_diabetes():
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import cross_val_score

    x, y = load_diabetes(return_X_y=True)
    scores = cross_val_score(GrowingRegressor(epochs=30, random_state=0), x, y, cv=3)  # R^2 on each fold
    assert scores.shape == (3,) and np.isfinite(scores).all() and scores.mean() > 0.2


# ------------------------------------------------------------------ own validation rows, no standardisation
def test_fit_with_the_runs_split_and_scaling_trains_the_runs_network(tmp_path):
    """``standardize=False`` with the digits run's own rows (scaled as its loader scales them) and its
    validation rows: the same network, epoch by epoch, as ``train_run`` on digits (what
    ``benchmarks/bench_sklearn.py`` times)."""
    from selfexpand.data import load_dataset
    from selfexpand.runconfig import RunConfig
    from selfexpand.runs import train_run

    data = load_dataset("digits", seed=3)
    _, summary = train_run(RunConfig(method="edge", dataset="digits", seed=3, epochs=6, out=str(tmp_path / "r")))
    est = GrowingClassifier("edge", epochs=6, standardize=False, random_state=3).fit(
        data.x_train.numpy(), data.y_train.numpy(), X_val=data.x_val.numpy(), y_val=data.y_val.numpy())
    assert est.summary_["n_train"] == len(data.y_train) and est.summary_["n_val"] == len(data.y_val)
    assert est.summary_["params_final"] == summary["params_final"] > summary["params_start"]  # it grew, alike
    records = [json.loads(line) for line in (tmp_path / "r" / "history.jsonl").read_text().splitlines()]
    run_losses = [r["train_loss"] for r in records if r["type"] == "epoch"]
    assert [r["train_loss"] for r in est.history_ if r["type"] == "epoch"] == run_losses
    # the same network: its test accuracy is the run's (predict computes in float64, the run in float32)
    n_test = len(data.y_test)
    assert est.score(data.x_test.numpy(), data.y_test.numpy()) == pytest.approx(summary["test_metric"], abs=1.5 / n_test)


def test_own_validation_rows_are_used_and_checked(blobs):
    x, y = blobs
    est = GrowingClassifier(epochs=2, random_state=0).fit(x[:200], y[:200], X_val=x[200:], y_val=y[200:])
    assert est.summary_["n_train"] == 200 and est.summary_["n_val"] == 100
    with pytest.raises(ValueError, match="both X_val and y_val"):
        GrowingClassifier(**FAST).fit(x, y, X_val=x[:5])
    with pytest.raises(ValueError, match="X_val has 3 features, X has 4"):
        GrowingClassifier(**FAST).fit(x, y, X_val=x[:5, :3], y_val=y[:5])
    with pytest.raises(ValueError, match="labels that y does not"):
        GrowingClassifier(**FAST).fit(x, y, X_val=x[:5], y_val=np.array(["pink"] * 5))
    with pytest.raises(ValueError, match="5 rows but y_val 4"):
        GrowingClassifier(**FAST).fit(x, y, X_val=x[:5], y_val=y[:4])
    with pytest.raises(ValueError, match="y_val has shape"):
        GrowingRegressor(**FAST).fit(x, x[:, :2], X_val=x[:5], y_val=x[:5, 0])


def test_standardize_false_uses_the_features_as_given(blobs):
    x, y = blobs
    est = GrowingClassifier(epochs=2, random_state=0, standardize=False).fit(x / 100, y)
    assert "mean" not in est.preprocessing_ and "target_mean" not in est.preprocessing_
    scaled = GrowingClassifier(epochs=2, random_state=0).fit(x / 100, y)
    assert "mean" in scaled.preprocessing_
    with pytest.raises(TypeError, match="standardize must be True or False"):
        GrowingClassifier(epochs=2, standardize="yes").fit(x, y)
    reg = GrowingRegressor(epochs=2, random_state=0, standardize=False).fit(x[:, :3], x[:, 3])
    assert "target_mean" not in reg.preprocessing_
