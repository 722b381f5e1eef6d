"""The claims each deep-network notebook tests, fixed before its five-seed results existed.

Taught in notebooks 03 and 05–07. A notebook that compares methods makes one *family* of
claims: which method, against which baseline, in which quantity, in which direction, on
which experiment — written down here, in code, before the sweeps of the evidence protocol
ran (commit history shows the order), so that the results cannot choose their own
questions. Each family is tested at once with :func:`samlab.claims.paired_family`: paired
t tests over the seeds, Holm's correction over the whole family, every claim reported as
"holds" or "not established". A method given as ``VALIDATION_BEST`` is the label among the
experiment's regularisers with the best mean noisy-validation accuracy
(:func:`samlab.results.select_on_validation`): notebook 05 never types in a winner.

The families (quantities of :data:`samlab.claims.QUANTITIES`):

* ``"03"`` — Baek et al.'s ablation at 30% and 50% symmetric noise (``cifar10-mini``, small
  CNN) and at 50% on ``mnist-mini`` (MLP): 1-SAM's reported accuracy above SGD's; J-SAM
  above L-SAM (the Jacobian part carries the effect); J-SAM memorising less than SGD; and,
  on the CNN, 1-SAM's last-layer weight and feature norms below SGD's (the mechanism); and
  over twice the epochs (``logit-jacobian-30-long``): SAM, given time to peak, above SGD, and
  J-SAM still memorising less than SGD with lower norms at the end (added 2026-11-29, before
  any five-seed result of these experiments existed).
* ``"05"`` — on ``cheap-regularisers-30``: SAM above SGD and memorising less; the regulariser
  chosen on validation above SGD and memorising less; SAM above that regulariser.
* ``"06"`` — on ``beyond-sam-30`` and ``-50``: F-SAM, OBF and SANER(SAM) above SAM, and
  SANER(F-SAM) above F-SAM (each wrapper against the optimiser it wraps); at 50%, SAM above
  SGD. (Amended 2026-11-29, before any five-seed result of these experiments existed: SANER(F-SAM)
  was compared with SAM, two changes at once; SAM above SGD at 30% is dropped because
  ``beyond-sam-30``'s SGD and SAM runs are the very runs notebook 05's family tests.)
* ``"07"`` — SAM above SGD under asymmetric noise (20%, 40%) and under the symmetric
  controls at matched realised rates (10%, 20%); J-SAM above SGD under asymmetric noise;
  SAM memorising less than SGD under asymmetric noise; SAM above SGD on the test images of
  the classes that lose labels (asymmetric 40%), at the validation-chosen epoch (this claim
  read the final epoch's confusion matrix until 2026-11-29, before any five-seed result of
  notebook 07 existed); and the two *contrasts* that carry the notebook's question, SAM's
  gain over SGD smaller under asymmetric noise than under its symmetric control at the
  matched realised rate, seed by seed (added 2026-11-29, before any five-seed result of
  notebook 07 existed: comparing the verdicts of two separate claims does not test it).

A claim's experiment is one name, or ``(experiment, control)`` for a contrast
(:func:`samlab.claims.paired_family`'s ``control``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from samlab import claims, experiments, results

__all__ = ["FAMILIES", "VALIDATION_BEST", "evaluate", "family", "labels_used", "resolve"]

#: stands for "the regulariser with the best mean validation accuracy" in a claim
VALIDATION_BEST = "<regulariser chosen on validation>"

#: (experiment, method, baseline, quantity, direction); experiment may be (experiment, control): a contrast
Claim = tuple[str | tuple[str, str], str, str, str, str]


def _ablation(name: str, mechanism: bool) -> list[Claim]:
    out = [
        (name, "1-SAM", "SGD", "test_at_val", "greater"),
        (name, "J-SAM", "L-SAM", "test_at_val", "greater"),
        (name, "J-SAM", "SGD", "last5_noisy_fit", "less"),
    ]
    if mechanism:
        out += [(name, "1-SAM", "SGD", "last5_head_norm", "less"), (name, "1-SAM", "SGD", "last5_feature_norm", "less")]
    return out


FAMILIES: dict[str, list[Claim]] = {
    "03": _ablation("logit-jacobian-30", True) + _ablation("logit-jacobian-50", True)
    + _ablation("logit-jacobian-mnist-50", False) + [
        ("logit-jacobian-30-long", "SAM", "SGD", "test_at_val", "greater"),
        ("logit-jacobian-30-long", "J-SAM", "SGD", "last5_noisy_fit", "less"),
        ("logit-jacobian-30-long", "J-SAM", "SGD", "last5_head_norm", "less"),
        ("logit-jacobian-30-long", "J-SAM", "SGD", "last5_feature_norm", "less"),
    ],
    "05": [
        ("cheap-regularisers-30", "SAM", "SGD", "test_at_val", "greater"),
        ("cheap-regularisers-30", "SAM", "SGD", "last5_noisy_fit", "less"),
        ("cheap-regularisers-30", VALIDATION_BEST, "SGD", "test_at_val", "greater"),
        ("cheap-regularisers-30", VALIDATION_BEST, "SGD", "last5_noisy_fit", "less"),
        ("cheap-regularisers-30", "SAM", VALIDATION_BEST, "test_at_val", "greater"),
    ],
    "06": [
        (name, method, baseline, "test_at_val", "greater")
        for name in ("beyond-sam-30", "beyond-sam-50")
        for method, baseline in ((("SAM", "SGD"),) if name == "beyond-sam-50" else ())
        + (("F-SAM", "SAM"), ("OBF", "SAM"), ("SANER(SAM)", "SAM"), ("SANER(F-SAM)", "F-SAM"))
    ],
    "07": [
        *[(name, "SAM", "SGD", "test_at_val", "greater")
          for name in ("asymmetric-20", "asymmetric-40", "symmetric-10", "symmetric-20")],
        *[(name, "J-SAM", "SGD", "test_at_val", "greater") for name in ("asymmetric-20", "asymmetric-40")],
        *[(name, "SAM", "SGD", "last5_noisy_fit", "less") for name in ("asymmetric-20", "asymmetric-40")],
        ("asymmetric-40", "SAM", "SGD", "source_acc_at_val", "greater"),
        *[((name, control), "SAM", "SGD", "test_at_val", "less")
          for name, control in (("asymmetric-20", "symmetric-10"), ("asymmetric-40", "symmetric-20"))],
    ],
}


def family(notebook: str) -> list[Claim]:
    """The claims notebook ``notebook`` (``"03"``, ``"05"``, ``"06"``, ``"07"``) tests."""
    if notebook not in FAMILIES:
        raise ValueError(f"notebook must be one of {tuple(FAMILIES)}, got notebook={notebook!r}")
    return list(FAMILIES[notebook])


def resolve(label: str, result: dict[str, Any]) -> str:
    """A claim's method label in ``result``: ``VALIDATION_BEST`` becomes the regulariser
    (:data:`samlab.experiments.REGULARISERS`) with the best mean validation accuracy."""
    if label != VALIDATION_BEST:
        return label
    regs = {r["method"] for r in result["runs"]} & set(experiments.REGULARISERS)
    if not regs:
        raise ValueError(f"result of {result.get('experiment')!r} has no regulariser runs to choose from")
    chosen = results.select_on_validation(
        {**result, "runs": [r for r in result["runs"] if r["method"] in regs]}, family=lambda _: "reg"
    )
    return chosen["reg"]["label"]


def evaluate(
    notebook: str, profile: str = "cpu", load: Callable[[str, str], dict[str, Any] | None] | None = None
) -> list[dict[str, Any]]:
    """Test notebook ``notebook``'s family on the result files of ``profile`` (``load(name,
    profile)``, default :func:`samlab.results.load`): one Holm correction over all its claims.

    Returns the claims in the order of :data:`FAMILIES` (dicts as :func:`samlab.claims.paired_family`
    gives, plus ``"as_registered"``: the claim as written here, before resolving ``VALIDATION_BEST``).
    A missing result file raises, naming the experiment.
    """
    load = load or results.load
    loaded: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in loaded:
            res = load(name, profile)
            if res is None:
                raise ValueError(f"notebook {notebook}'s claims need {name} at the {profile} profile: no result file")
            loaded[name] = res
        return loaded[name]

    comparisons: list[tuple] = []
    for where, method, baseline, quantity, direction in family(notebook):
        name, control = where if isinstance(where, tuple) else (where, None)
        res = get(name)
        item = (res, resolve(method, res), resolve(baseline, res), quantity, direction)
        comparisons.append(item if control is None else (*item, get(control)))
    tested = claims.paired_family(comparisons)
    return [{**c, "as_registered": reg} for c, reg in zip(tested.values(), family(notebook))]


def labels_used(notebook: str) -> Sequence[tuple[str, str]]:
    """(experiment, label) pairs the family names, ``VALIDATION_BEST`` left out (for checks)."""
    return [
        (name, m)
        for c in family(notebook)
        for name in (c[0] if isinstance(c[0], tuple) else (c[0],))
        for m in c[1:3]
        if m != VALIDATION_BEST
    ]
