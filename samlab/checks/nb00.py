"""Exercise checks for notebook 00 (label noise and memorisation)."""

from __future__ import annotations

import math


from samlab.checks.common import as_number
from samlab.data import Dataset
from samlab.train import History

__all__ = ["check_realised_rate", "check_noisy_fit_at_val"]


def check_realised_rate(answer: object, ds: Dataset) -> bool:
    """Exercise 1: the realised noise rate is the fraction of training labels that changed."""
    value = as_number(answer, "The realised rate")
    if value is None:
        return False
    truth = float((ds.y_train != ds.y_train_clean).float().mean())
    n_noisy = int((ds.y_train != ds.y_train_clean).sum())
    if math.isclose(value, truth, abs_tol=1e-6):
        print(f"✓ Right: {n_noisy} of {len(ds.y_train)} labels differ from the true ones.")
        return True
    if math.isclose(value, truth * len(ds.y_train), abs_tol=1e-3):
        print("✗ That is a count of examples; the rate is a fraction — divide by the number of training examples.")
    elif ds.noise is not None and math.isclose(value, ds.noise.rate, abs_tol=1e-9):
        print("✗ That is the *requested* rate. Count how many observed labels actually differ from the true ones.")
    elif math.isclose(value, 1 - truth, abs_tol=1e-6):
        print("✗ That is the fraction of labels that are still correct; the question asks for the changed ones.")
    else:
        print("✗ Not quite. Compare the observed labels ds.y_train with the true ones ds.y_train_clean.")
    return False


def check_noisy_fit_at_val(answer: object, history: History) -> bool:
    """Exercise 2: the noisy fit at the epoch chosen on the noisy validation set (``history.val_epoch``)."""
    value = as_number(answer, "The noisy fit")
    if value is None:
        return False
    record = history.at_epoch(history.val_epoch)
    if math.isclose(value, record["noisy_fit"], abs_tol=1e-6):
        print(f"✓ Right: at epoch {history.val_epoch} the network fits {value:.1%} of the noisy examples to their wrong label "
              "(a guess matches a wrong label about one time in ten with ten classes: compare with that chance level).")
        return True
    oracle = history.at_epoch(history.oracle_epoch)["noisy_fit"]
    final = history.records[-1]["noisy_fit"]
    if history.oracle_epoch != history.val_epoch and math.isclose(value, oracle, abs_tol=1e-6):
        print("✗ That is at the epoch of best *test* accuracy: an oracle, chosen by looking at the test set. "
              "Use the epoch chosen on validation, history.val_epoch.")
    elif math.isclose(value, final, abs_tol=1e-6):
        print("✗ That is the value at the *last* epoch; look up history.val_epoch first.")
    elif math.isclose(value, record["clean_fit"], abs_tol=1e-6):
        print("✗ That is the fit of the *clean* examples at that epoch; the question asks for the noisy ones.")
    elif math.isclose(value, record.get("noisy_true", math.nan), abs_tol=1e-6):
        print("✗ That is the fraction of noisy examples predicted as their *true* class; the question asks for their wrong label.")
    elif value > 1:
        print("✗ Accuracies here are fractions in [0, 1], not percentages.")
    else:
        print("✗ Not quite. Use history.val_epoch and the 'noisy_fit' entry of that epoch's record (history.at_epoch).")
    return False
