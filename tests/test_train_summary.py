"""History.summary's reported numbers on hand-made histories, and the validation metrics fit records."""

from __future__ import annotations

import pytest
import torch

from samlab import data, methods, models, train
from samlab.train import History, smoothed


def _history(test, val=None, noisy=None):
    recs = []
    for e, t in enumerate(test):
        r = {"epoch": e, "test_acc": t, "clean_fit": 0.5, "noisy_fit": (noisy or [0.0] * len(test))[e],
             "seconds": 1.0 if e else 0.0, "images_per_second": 10.0}
        if val is not None:
            r["val_acc"] = val[e]
        recs.append(r)
    return History(records=recs)


def test_smoothing_is_a_centred_window_of_three_truncated_at_the_ends():
    assert smoothed([0.0, 3.0, 6.0, 0.0]) == pytest.approx([1.5, 3.0, 3.0, 3.0])
    assert smoothed([1.0]) == [1.0]
    assert smoothed([2.0, 4.0], width=1) == [2.0, 4.0]
    with pytest.raises(ValueError, match="width must be an odd"):
        smoothed([1.0], width=2)


def test_summary_by_hand():
    test = [0.10, 0.40, 0.55, 0.50, 0.45, 0.60, 0.44, 0.43, 0.42, 0.41]
    # raw val peaks at epoch 5 (a lone spike); smoothed:
    # e1 (0.1+.5+.52)/3=.373  e2 (.5+.52+.5)/3=.507  e3 (.52+.5+.49)/3=.503  e4 (.5+.49+.6)/3=.53
    # e5 (.49+.6+.3)/3=.463  e6 (.6+.3+.3)/3=.4 ... : best smoothed at epoch 4
    val = [0.10, 0.50, 0.52, 0.50, 0.49, 0.60, 0.30, 0.30, 0.30, 0.30]
    noisy = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    s = _history(test, val, noisy).summary()
    assert s["val_epoch"] == 4 and s["test_at_val"] == 0.45 and s["val_acc"] == 0.49
    assert s["oracle_test_acc"] == 0.60 and s["oracle_epoch"] == 5
    assert "best_test_acc" not in s and "best_epoch" not in s  # the maximum only under a name that says oracle
    assert s["last5_test_acc"] == pytest.approx((0.60 + 0.44 + 0.43 + 0.42 + 0.41) / 5)
    assert s["last5_noisy_fit"] == pytest.approx((0.5 + 0.6 + 0.7 + 0.8 + 0.9) / 5)
    assert s["final_test_acc"] == 0.41 and s["final_noisy_fit"] == 0.9


def test_the_epoch_chosen_on_another_curve_by_hand():
    h = _history([0.1, 0.4, 0.5, 0.3], val=[0.1, 0.6, 0.2, 0.2])
    for r, clean in zip(h.records, [0.1, 0.2, 0.5, 0.8]):
        r["val_acc_clean"] = clean
    # smoothed val: .35 .3 .333 .2 -> epoch 0; smoothed clean: .15 .267 .5 .65 -> epoch 3
    assert h.epoch_chosen_on("val_acc") == h.val_epoch == 0
    assert h.epoch_chosen_on("val_acc_clean") == 3 and h.at_epoch(3)["test_acc"] == 0.3
    with pytest.raises(ValueError, match="key must be recorded at every epoch"):
        _history([0.1, 0.3]).epoch_chosen_on("val_acc")


def test_ties_pick_the_earliest_epoch_and_short_runs_average_what_they_have():
    s = _history([0.1, 0.3, 0.2], val=[0.5, 0.5, 0.5]).summary()  # exact in binary: a true tie
    assert s["val_epoch"] == 0 and s["test_at_val"] == 0.1
    assert s["last5_test_acc"] == pytest.approx(0.25)  # two trained epochs: epoch 0 is not one of them


def test_without_validation_the_validation_keys_are_none():
    s = _history([0.1, 0.3, 0.2]).summary()
    assert s["val_epoch"] is None and s["test_at_val"] is None and s["val_acc"] is None
    assert s["oracle_test_acc"] == 0.3


def test_fit_records_validation_metrics_against_observed_and_true_labels():
    ds = data.load("digits", noise="symmetric-flip", rate=0.4, noise_seed=1)
    model = models.build("linear", ds.input_shape, ds.num_classes, seed=0)
    h = train.fit(model, methods.get("sgd"), ds, epochs=2, lr=0.1, progress=False)
    with torch.no_grad():
        pred = model(ds.x_val).argmax(1)
    last = h.records[-1]
    assert last["val_acc"] == pytest.approx(float((pred == ds.y_val).float().mean()))
    assert last["val_acc_clean"] == pytest.approx(float((pred == ds.y_val_clean).float().mean()))
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(ds.x_val), ds.y_val)
    assert last["val_loss"] == pytest.approx(float(loss), rel=1e-5)
    assert all("val_acc" in r for r in h.records) and h.summary()["val_epoch"] in range(3)
    plain = data.load("digits", noise="symmetric-flip", rate=0.4, noise_seed=1, val_fraction=0.0)
    h0 = train.fit(models.build("linear", plain.input_shape, 10, seed=0), methods.get("sgd"), plain, epochs=1, progress=False)
    assert "val_acc" not in h0.records[-1] and h0.summary()["val_epoch"] is None
