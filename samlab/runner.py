"""The runner: train every (method, seed) of a named experiment and merge the runs into its result file.

Taught in notebooks 03–07, which load the committed result of the active profile
(:func:`load_or_run`) and re-run on request. From a shell::

    python -m samlab.experiments list
    python -m samlab.experiments run memorisation --profile cpu
    python -m samlab.experiments run beyond-sam-30 --profile cpu --only SAM --seeds 0,1
    python -m samlab.experiments table            # markdown table of every result file

A run writes ``data/results/<profile>/<name>.json`` (:mod:`samlab.results`) with the
configuration, samlab version and git commit, hardware, and for every (method, seed) the
full per-epoch history, its summary (:meth:`samlab.train.History.summary`: the
validation-chosen epoch and the test accuracy there, the oracle maximum, last-5 means,
...), seconds per epoch, and the run's noise: ``noise_seed``, the realised noise rate of
its training part (``realised_noise_rate``) and of its validation part
(``val_noise_rate``), and ``noise_confusion`` (counts of training examples by true and
observed label).

Noise per seed: unless the experiment fixes ``noise_seed``, seed s draws its own label
noise and validation split with noise seed s (:meth:`samlab.experiments.Experiment.noise_seed_of`),
so the dataset is built once per seed (runs are trained seed-major). The result-level
``realised_noise_rate`` and ``val_noise_rate`` are the means over the experiment's seeds,
``noise_confusion`` the sum of the seeds' counts, ``noise_seeds`` the seeds' noise seeds
and ``dataset`` the description of the first seed's data; all are computed over every
seed of the experiment, whichever seeds one process trains.

The file is rewritten after every finished run, and every run checkpoints each epoch, so
an interrupted ``run`` continues where it stopped when called again.
Several processes may run disjoint parts of one experiment (``--only``, ``--seeds``):
each merges its runs into the file under a lock.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from samlab import data as data_mod
from samlab import experiments, hardware, methods, models, profiles, provenance, results, sharing, train
from samlab.confusion import confusion, confusion_counts

__all__ = ["checkpoint_path", "dataset_for_seed", "finished", "grid", "load_or_run", "main", "run", "run_parallel"]


def dataset_for_seed(exp: experiments.Experiment, seed: int, base: data_mod.Dataset | None = None) -> data_mod.Dataset:
    """Run seed ``seed``'s data: ``exp``'s dataset with the noise and validation split of
    ``exp.noise_seed_of(seed)`` (on the CPU). Equal to ``data.load(exp.dataset, noise=exp.noise,
    rate=exp.rate, noise_seed=exp.noise_seed_of(seed), val_fraction=exp.val_fraction, ...)``;
    ``base`` (the clean dataset without a split) saves reading it again."""
    if base is None:
        base = data_mod.load(exp.dataset, val_fraction=0.0, **exp.data_options)
    noise_seed = exp.noise_seed_of(seed)
    ds = data_mod.with_noise(base, exp.noise, exp.rate, noise_seed) if exp.noise is not None else base
    return data_mod.split_validation(ds, exp.val_fraction, noise_seed)


def _noise_record(ds: data_mod.Dataset, noise_seed: int) -> dict[str, Any]:
    return {
        "noise_seed": noise_seed,
        "realised_noise_rate": ds.train_noise_rate,
        "val_noise_rate": ds.val_noise_rate,
        #: counts N[i][j] of training examples (validation excluded) of true class i given observed label j
        "noise_confusion": confusion_counts(ds.y_train_clean, ds.y_train, ds.num_classes),
    }


def checkpoint_path(exp: experiments.Experiment, profile: str, label: str, seed: int, root: Path | None = None) -> Path:
    """Where run (``label``, ``seed``) of ``exp`` checkpoints every epoch."""
    root = Path(root) if root is not None else data_mod.data_root() / "checkpoints"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    return root / profile / exp.name / f"{safe}-seed{seed}.ckpt"


def finished(path: Path, config: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """Runs already in the result file at ``path`` that ``config`` would train the same way.

    A run depends on its own seed only (model initialisation, batch order, and its noise and
    validation split, drawn with ``noise_seed_of(seed)``) and on its own method's
    configuration. So an experiment whose seeds were extended keeps its finished runs, one
    whose seeds were cut keeps those of the seeds left, and one whose method list changed
    (a method's radius set from a tuning sweep, a method added or removed) keeps the runs of
    every method whose configuration did not change. Any other change (data, noise, model,
    training) keeps nothing. A run stored in another experiment's file is returned as its
    reference (:func:`samlab.sharing.reference`), as the file holds it, if the reference can
    still be read (:func:`samlab.sharing.resolve_shared`); one that cannot (the run stored there
    was deleted, or trained again) is not finished: running the experiment shares or trains it anew."""
    if not path.exists():
        return {}
    previous = json.loads(path.read_text())
    now = json.loads(json.dumps(config))
    old = previous.get("config") or {}
    rest = lambda cfg: {k: v for k, v in cfg.items() if k not in ("seeds", "methods")}  # noqa: E731
    if rest(old) != rest(now):
        return {}
    readable = {(r["method"], r["seed"]) for r in sharing.resolve_shared(previous, path.parent, drop_unreadable=True)["runs"]}
    same = {label for label, cfg in now.get("methods", {}).items() if old.get("methods", {}).get(label) == cfg}
    return {(r["method"], r["seed"]): r for r in previous["runs"]
            if r["seed"] in now["seeds"] and r["method"] in same and (r["method"], r["seed"]) in readable}


def shared_finished(
    exp: experiments.Experiment, profile: str, results_root: Path | None = None
) -> dict[tuple[str, int], tuple[str, dict[str, Any]]]:
    """Runs of ``exp`` already trained by *another* experiment: ``(label, seed) -> (that
    experiment's name, its finished run)``.

    Two experiments train identical runs where :func:`samlab.experiments.shared_runs` pairs
    their labels (same data, noise, model, training settings, validation fraction, noise
    seeds and method configuration) and both have the seed; the run must be finished in
    the other's result file for that file's current configuration (:func:`finished`).
    The first experiment in name order that has it wins.
    """
    found: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
    for other_name in sorted(experiments.EXPERIMENTS):
        if other_name == exp.name:
            continue
        other = experiments.get(other_name, profile)
        pairs = experiments.shared_runs(exp, other)
        if not pairs:
            continue
        done = finished(results.path(other_name, profile, results_root), other.config())
        for label, other_label in pairs.items():
            for seed in exp.seeds:
                if (other_label, seed) in done and (label, seed) not in found:
                    found[(label, seed)] = (other_name, done[(other_label, seed)])
    return found


def _reference(label: str, other: str, original: dict[str, Any]) -> dict[str, Any]:
    """The reference this experiment stores, under ``label``, to ``original``, a run ``other``'s file holds:
    to the file that stores the run (``original``'s own source if ``original`` is itself a reference; a run
    kept in ``other``'s file as a copy is stored there)."""
    source = original["shared_from"] if sharing.is_reference(original) else {"experiment": other, "method": original["method"]}
    return sharing.reference(label, original, source)


def _readable_reference(label: str, found: tuple[str, dict[str, Any]] | None, folder: Path) -> dict[str, Any] | None:
    """:func:`_reference` to ``found`` (``(other, original)`` of :func:`shared_finished`) if it can be read
    from ``folder`` now, else ``None`` (nothing found, or the run stored there has changed)."""
    if found is None:
        return None
    ref = _reference(label, *found)
    return ref if sharing.readable(ref, folder) else None


def grid(
    exp: experiments.Experiment, only: Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> list[tuple[str, int]]:
    """The (label, seed) runs of ``exp`` asked for by ``only`` (method labels) and ``seeds``, seed-major
    (every method of the first seed first); unknown labels or seeds are refused by name."""
    labels = list(exp.methods) if only is None else list(only)
    unknown = [lab for lab in labels if lab not in exp.methods]
    if unknown:
        raise ValueError(f"only must name methods of {exp.name!r}: {tuple(exp.methods)}, got {unknown}")
    wanted = list(exp.seeds) if seeds is None else list(seeds)
    if not set(wanted) <= set(exp.seeds):
        raise ValueError(f"seeds must be among the seeds of {exp.name!r}: {tuple(exp.seeds)}, got {tuple(wanted)}")
    return [(label, seed) for seed in exp.seeds for label in exp.methods if label in labels and seed in wanted]


def run(
    name: str,
    profile: str | None = None,
    *,
    only: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    results_root: Path | None = None,
    checkpoint_root: Path | None = None,
    progress: bool = True,
    save: bool = True,
    share: bool = True,
) -> dict[str, Any]:
    """Train every (method, seed) of experiment ``name`` and return (and save) the result.

    With ``share`` (default), a run that another experiment has already trained with the
    very same settings (:func:`shared_finished`) is not trained again: this result file
    stores a reference to it (:func:`samlab.sharing.reference`: this experiment's label and
    ``shared_from`` = ``{"experiment", "method"}`` of the file that stores the run), and
    every reader resolves it from there (:func:`samlab.sharing.resolve_shared`; the returned
    result holds the full run). Notebooks that show both experiments say that those are the
    same runs (:func:`samlab.results.shared_note`).

    ``only`` restricts training to some method labels and ``seeds`` to some of the
    experiment's seeds. Finished runs found in the result
    file (same configuration) are not re-trained; an interrupted run resumes from its last
    epoch checkpoint. Several processes may run disjoint ``only``/``seeds`` sets of one experiment at
    once: each merges its runs into the file under a lock.
    """
    profile = profile or profiles.active()
    exp = experiments.get(name, profile)
    wanted = set(grid(exp, only, seeds))
    device = torch.device(device) if device is not None else hardware.default_device()
    path = results.path(name, profile, results_root)
    config = exp.config()
    order = [(label, seed) for label in exp.methods for seed in exp.seeds]

    base = data_mod.load(exp.dataset, val_fraction=0.0, **exp.data_options)
    noise: dict[int, dict[str, Any]] = {}
    first_description = ""
    for seed in exp.seeds:  # every seed's draw, so that the result-level fields do not depend on who trains what
        ds = dataset_for_seed(exp, seed, base)
        noise[seed] = _noise_record(ds, exp.noise_seed_of(seed))
        first_description = first_description or ds.describe()
        del ds
    per_seed = " (the first seed's data; each seed draws its own noise and validation split)" if exp.noise_seed is None and len(exp.seeds) > 1 else ""
    val_rates = [n["val_noise_rate"] for n in noise.values() if n["val_noise_rate"] is not None]
    env = {k: v for k, v in provenance.record(device).items() if k != "profile"}
    result: dict[str, Any] = {
        "experiment": name,
        "description": exp.description,
        "profile": profile,
        "config": config,
        "dataset": first_description + per_seed,
        "noise_seeds": [noise[seed]["noise_seed"] for seed in exp.seeds],
        #: mean over the experiment's seeds of each seed's training-part noise rate
        "realised_noise_rate": sum(n["realised_noise_rate"] for n in noise.values()) / len(noise),
        "val_noise_rate": sum(val_rates) / len(val_rates) if val_rates else None,
        #: sum over the experiment's seeds of N[i][j]: training examples of true class i given observed label j
        "noise_confusion": [
            [sum(n["noise_confusion"][i][j] for n in noise.values()) for j in range(base.num_classes)]
            for i in range(base.num_classes)
        ],
        **env,
        "command": f"python -m samlab.experiments run {name} --profile {profile}",
        "runs": [],
    }
    mine: dict[tuple[str, int], dict[str, Any]] = {}

    def merged() -> dict[str, Any]:
        # a run trained here wins; a reference of this process loses to what the file holds for that key by now
        # (another process may have replaced it by a copy of the run: sharing.keep_referenced)
        refs = {key: run for key, run in mine.items() if sharing.is_reference(run)}
        trained = {key: run for key, run in mine.items() if key not in refs}
        runs = {**refs, **(finished(path, config) if save else {}), **trained}
        return {**result, "runs": [runs[key] for key in order if key in runs]}

    if save:   # runs stored here that this configuration trains again, and that other files show: copied there first
        for other in sharing.keep_referenced(path, finished(path, config)):
            print(f"{name}: runs stored in {path.name} that this configuration trains again were copied into {other}'s file, "
                  f"which refers to them", flush=True)
    shared = shared_finished(exp, profile, results_root) if share else {}
    # Seed-major, so that an interrupted sweep has every method for its first seeds; one dataset per seed.
    ds, ds_seed = None, None
    for seed, label in ((seed, label) for seed in exp.seeds for label in exp.methods):
        if (label, seed) not in wanted or (save and (label, seed) in finished(path, config)):
            continue
        ref = _readable_reference(label, shared.get((label, seed)), path.parent)
        if ref is None and (label, seed) in shared:
            # the other file changed since this run started (trained again by another process): look again, else train
            ref = _readable_reference(label, shared_finished(exp, profile, results_root).get((label, seed)), path.parent)
        if ref is not None:
            mine[(label, seed)] = ref
            if progress:
                source = ref["shared_from"]   # the file and label that store the run
                print(f"{name} {label} seed {seed}: the run of {source['experiment']} ({source['method']}), not trained again",
                      flush=True)
            if save:
                with results.locked(path):
                    results.write(path, merged())
            continue
        if ds_seed != seed:
            ds, ds_seed = None, None  # free the previous seed's tensors first
            ds, ds_seed = dataset_for_seed(exp, seed, base).to(device), seed
        method_cfg = {k: v for k, v in exp.methods[label].items() if k != "fit"}
        fit_overrides = exp.methods[label].get("fit", {})
        method = methods.get(method_cfg)
        model = models.build(exp.model, ds.input_shape, ds.num_classes, seed=seed, **exp.model_options).to(device)
        ckpt = checkpoint_path(exp, profile, label, seed, checkpoint_root) if save else None
        t0 = time.perf_counter()
        fit_config = train.FitConfig(
            **{**exp.fit, **fit_overrides, "seed": seed, "checkpoint": str(ckpt) if ckpt else None, "progress": progress}
        )
        if ckpt is not None and train.stale_checkpoint(model, method, ds, fit_config):
            aside = ckpt.with_suffix(f".stale-{int(time.time())}")
            ckpt.rename(aside)  # an older configuration of this label (e.g. before a radius was re-tuned)
            print(f"{name} {label} seed {seed}: checkpoint of another configuration set aside as {aside.name}")
        history = train.fit(model, method, ds, fit_config)
        mine[(label, seed)] = {
            "method": label,
            "method_config": method.config(),
            "fit_overrides": fit_overrides,
            "seed": seed,
            **history.summary(),
            "dataset": ds.describe(),
            **noise[seed],
            "wall_seconds": time.perf_counter() - t0,
            "hardware": env["hardware"],
            "git_commit": env["git_commit"],
            "job": provenance.job(),  #: the submitit job id (samlab.cluster) and the host
            "history": history.records,
            #: final model on the test set: C[i][j] = test images of class i predicted as j
            "test_confusion": confusion(model, ds.x_test, ds.y_test, ds.num_classes),
        }
        if save:
            with results.locked(path):
                results.write(path, merged())
    if not save:
        return sharing.resolve_shared(merged(), path.parent)
    with results.locked(path):
        final = merged()
        results.write(path, final)
    return sharing.resolve_shared(final, path.parent)


def load_or_run(name: str, profile: str | None = None, *, rerun: bool = False, **run_kwargs: Any) -> dict[str, Any]:
    """What a notebook calls: the saved result of ``name`` for ``profile`` if there is one and
    ``rerun`` is false, otherwise a fresh :func:`run` (saved, except under ``smoke``)."""
    profile = profile or profiles.active()
    result = None if rerun else results.load(name, profile)
    if result is None:
        run_kwargs.setdefault("save", profile != "smoke")
        result = run(name, profile, **run_kwargs)
    return result


def run_order() -> list[str]:
    """``run all``'s order: the experiments that choose settings on validation
    (:data:`samlab.experiments.SELECTION`) first, since the others' settings follow their
    choices; then ``cheap-regularisers-30``, whose validation choice is notebook 07's
    regulariser (:data:`samlab.experiments.REGULARISER`); then the rest by name."""
    first = [*experiments.SELECTION, "cheap-regularisers-30"]
    return [*first, *sorted(set(experiments.EXPERIMENTS) - set(first))]


def distinct(names: Sequence[str], profile: str) -> tuple[list[str], dict[str, str]]:
    """``run all``: the names whose ``profile`` configuration differs from every earlier one's, and for each
    name left out, the earlier experiment that trains the same runs (e.g. ``resnet18-cifar10-mini-30`` outside
    ``gpu`` is ``resnet18-cifar10-30``)."""
    keep: list[str] = []
    same: dict[str, str] = {}
    configs: dict[str, experiments.Experiment] = {}
    for name in names:
        cfg = dataclasses.replace(experiments.get(name, profile), name="")
        twin = next((other for other, c in configs.items() if c == cfg), None)
        if twin is None:
            configs[name] = cfg
            keep.append(name)
        else:
            same[name] = twin
    return keep, same


def run_parallel(
    name: str,
    profile: str | None = None,
    *,
    jobs: int,
    only: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    device: str | None = None,
    share: bool = True,
) -> int:
    """Train the runs of ``name`` that are not finished in ``jobs`` worker processes on this machine.

    Each (method, seed) is one ``python -m samlab.experiments run NAME --only LABEL --seeds SEED``
    subprocess (so exactly a local run of that run: it checkpoints, resumes and merges into the
    result file under the lock), ``jobs`` of them at a time, in the experiment's seed-major order;
    ``OMP_NUM_THREADS`` is 1 unless set (two single-thread processes use a 2-core machine best).
    Returns 0 if every run finished, else the first non-zero exit status.
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got jobs={jobs!r}")
    profile = profile or profiles.active()
    exp = experiments.get(name, profile)
    done = finished(results.path(name, profile), exp.config())
    todo = [(label, seed) for label, seed in grid(exp, only, seeds) if (label, seed) not in done]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}

    def one(run_: tuple[str, int]) -> int:
        label, seed = run_
        cmd = [sys.executable, "-m", "samlab.experiments", "run", name, "--profile", profile,
               "--only", label, "--seeds", str(seed)] + (["--device", device] if device else []) + ([] if share else ["--no-share"])
        code = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode
        print(f"{name} {label} seed {seed}: " + ("done" if code == 0 else f"FAILED (exit {code})"), flush=True)
        return code

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        codes = list(pool.map(one, todo))
    return next((c for c in codes if c != 0), 0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m samlab.experiments list | run NAME | table``."""
    parser = argparse.ArgumentParser(
        prog="python -m samlab.experiments", description=__doc__.split("\n")[0],
        epilog="On a cluster: 'submit NAME' and 'status NAME' (samlab.cluster; see 'submit -h').",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list experiments")
    p_run = sub.add_parser("run", help="run an experiment (resumes if interrupted)")
    p_run.add_argument("name", help="experiment name, or 'all'")
    p_run.add_argument("--profile", default=None, choices=profiles.PROFILES)
    p_run.add_argument("--only", default=None, help="comma-separated method labels")
    p_run.add_argument("--seeds", default=None, help="comma-separated seeds (a subset of the experiment's)")
    p_run.add_argument("--device", default=None)
    p_run.add_argument("--no-share", action="store_true",
                       help="train every run, even one another experiment has already trained with the same settings")
    p_run.add_argument("--jobs", type=int, default=1,
                       help="worker processes on this machine, one (method, seed) run each (single-threaded)")
    p_table = sub.add_parser("table", help="markdown table of the saved results")
    p_table.add_argument("--profile", default=None, choices=profiles.PROFILES)
    p_table.add_argument("--readme", default=None, help="rewrite the table between the results markers of this file")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for name, fn in sorted(experiments.EXPERIMENTS.items()):
            print(f"{name:28s} {fn('cpu').description}")
        return 0
    if args.cmd == "run":
        names = run_order() if args.name == "all" else [args.name]
        if args.name == "all":
            names, same = distinct(names, args.profile or profiles.active())
            for name, twin in same.items():
                print(f"{name}: skipped, its runs at this profile are those of {twin}")
        for name in names:
            if args.jobs > 1:
                code = run_parallel(
                    name, args.profile, jobs=args.jobs, only=args.only.split(",") if args.only else None,
                    seeds=[int(v) for v in args.seeds.split(",")] if args.seeds else None, device=args.device,
                    share=not args.no_share,
                )
                if code:
                    return code
                continue
            res = run(
                name,
                args.profile,
                only=args.only.split(",") if args.only else None,
                seeds=[int(v) for v in args.seeds.split(",")] if args.seeds else None,
                device=args.device,
                share=not args.no_share,
            )
            print(f"{name}: {results.path(name, res['profile'])}")
            for row in results.summarise(res):
                at_val = f"{row['val_mean']:.3f}" if row["validation"] else "  -  "
                print(f"  {row['method']:16s} at val. epoch {at_val}  last-5 {row['last5_mean']:.3f}  "
                      f"oracle max {row['oracle_mean']:.3f}  {row['seconds_per_epoch']:.2f} s/epoch")
        return 0
    table = results.committed_table(args.profile)
    if args.readme:
        results.update_readme(Path(args.readme), table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
