import numpy as np
import pytest

from rtml_profile import UserError, metrics, zoo
from rtml_profile import data as datamod
from rtml_profile.train import overfitting_summary, pick_device, train


class _Lazy(dict):
    """Data sets loaded on first use, so the fast (housing) tests never decode CIFAR-10."""

    def __init__(self, data_dir):
        super().__init__()
        self.data_dir = data_dir

    def __missing__(self, name):
        ds = datamod.load(name, self.data_dir)
        self[name] = ds.subset(2000, 400) if name == "cifar10" else ds
        return self[name]


@pytest.fixture(scope="module")
def datasets(data_dir):
    return _Lazy(data_dir)


@pytest.mark.parametrize(
    "model_id",
    [pytest.param(i, marks=[pytest.mark.slow] * (zoo.get(i).dataset == "cifar10")) for i in zoo.list_models()],
)
def test_each_model_learns(model_id, datasets):
    spec = zoo.get(model_id)
    epochs = 30 if spec.task == "regression" else 3
    r = train(spec, datasets[spec.dataset], zoo.with_overrides(spec.recipe, epochs=epochs), progress=False)
    losses = [h["train_loss"] for h in r.history]
    assert len(r.history) == epochs
    assert losses[-1] < losses[0]
    h = r.history[-1]
    for key in ("train_loss", "val_loss", f"train_{spec.metric}", f"val_{spec.metric}", "gap", "epoch_time_s"):
        assert np.isfinite(h[key]), key
    assert r.overfitting["best_val_epoch"] in range(1, epochs + 1)
    if spec.task == "classification":
        cm = np.array(r.final["val"]["confusion_matrix"])
        assert cm.shape == (10, 10) and cm.sum() == 400
        assert len(r.final["val"]["per_class_accuracy"]) == 10
    else:
        assert {"r2", "mae", "rmse", "hw2_ratio_accuracy"} <= set(r.final["val"])


@pytest.mark.slow
def test_seeded_cpu_training_is_reproducible(datasets):
    spec = zoo.get("2a")
    recipe = zoo.with_overrides(spec.recipe, epochs=2)
    a, b, c = (train(spec, datasets["cifar10"], recipe, seed=s, progress=False) for s in (7, 7, 8))
    assert a.final == b.final
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert a.final["val"]["loss"] != c.final["val"]["loss"]


@pytest.mark.slow
def test_train_loss_is_epoch_mean_not_last_batch(datasets):
    """With batch 64 over 2000 rows, the epoch mean must equal the size-weighted mean of all 32 batch losses."""
    import torch
    import torch.nn.functional as F

    spec = zoo.get("2a")
    ds = datasets["cifar10"]
    r = train(spec, ds, zoo.with_overrides(spec.recipe, epochs=1), seed=3, progress=False)
    # replay epoch 1 by hand with the same seed
    torch.manual_seed(3)
    model = zoo.build(spec)
    opt = torch.optim.SGD(model.parameters(), lr=spec.recipe.lr)
    X, Y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(3))
    total = 0.0
    for i in range(0, len(X), 64):
        idx = perm[i : i + 64]
        loss = F.nll_loss(model(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
    assert r.history[0]["train_loss"] == pytest.approx(total / len(X), rel=1e-5)


def test_cuda_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="no CUDA device"):
        pick_device("cuda")


def test_overfitting_summary_hand_made():
    hist = [
        {"epoch": i + 1, "val_loss": vl, "val_accuracy": va, "train_accuracy": ta, "gap": ta - va}
        for i, (vl, va, ta) in enumerate([(2.0, 0.30, 0.31), (1.5, 0.45, 0.50), (1.6, 0.44, 0.70), (1.9, 0.41, 0.90)])
    ]
    o = overfitting_summary(hist, "accuracy")
    assert o["best_val_epoch"] == 2 and o["min_val_loss_epoch"] == 2
    assert o["final_minus_best"] == pytest.approx(-0.04)
    assert o["final_gap"] == pytest.approx(0.49) and o["max_gap"] == pytest.approx(0.49)


def test_regression_metrics_hand_computed():
    # scaled predictions/targets with price range 100..200
    m = metrics.regression([0.5, 0.25, 1.0], [0.5, 0.5, 0.0], 100.0, 200.0)
    # prices: pred 150, 125, 200; target 150, 150, 100 -> errors 0, -25, 100
    assert m["mae"] == pytest.approx(125 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt((0 + 625 + 10000) / 3))
    ss_tot = ((np.array([150, 150, 100]) - 400 / 3) ** 2).sum()
    assert m["r2"] == pytest.approx(1 - 10625 / ss_tot)
    # HW2 ratio: rows 1, 2 (row 3 has target 0: undefined) -> r = 1, 0.5 -> mean 0.75
    assert m["hw2_ratio_accuracy"] == pytest.approx(0.75) and m["hw2_ratio_undefined_rows"] == 1


def test_hw2_ratio_folds_and_is_unbounded_below():
    acc, _ = metrics.hw2_ratio_accuracy(np.array([1.5, 4.0]), np.array([1.0, 1.0]))
    assert acc == pytest.approx((0.5 + 2.0) / 2)  # r=4 -> 2-4 = -2, |.| = 2: worse predictions score higher


def test_classification_metrics_hand_computed():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = metrics.classification(scores, np.array([0, 1, 1, 1]), 2)
    assert m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 0], [1, 2]]
    assert m["per_class_accuracy"] == [1.0, pytest.approx(2 / 3)]
