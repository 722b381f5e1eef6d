"""Sweeps beyond one machine: an experiment's (method, seed) grid handed to submitit, one job per run.

From a shell (``pip install 'samlab[cluster]'`` first)::

    python -m samlab.experiments submit beyond-sam-30 --profile cpu --executor local --wait
    python -m samlab.experiments submit beyond-sam-30 --profile gpu --executor slurm --partition gpu \\
        --gpus-per-job 1 --cpus-per-job 8 --time-min 240 --array-parallelism 8 --dry-run
    python -m samlab.experiments status beyond-sam-30 --profile gpu

Each job is a :class:`RunJob`, which calls ``runner.run(name, profile, only=[label], seeds=[seed])``:
the very call of ``python -m samlab.experiments run NAME --only LABEL --seeds SEED``. So a job is a
local run of one (method, seed): it checkpoints every epoch, resumes from its last checkpoint, and
merges its run into the experiment's result file under the lock of :func:`samlab.results.locked`
(which says on which shared file systems that lock holds across machines). The jobs of one
``submit`` go out as one submitit job array (``executor.submit_array``): on Slurm one ``sbatch
--array``, with the local executor one process per job, all at once.

Pre-emption and time limits: submitit signals a job (``USR2``) before Slurm stops it;
:meth:`RunJob.checkpoint` hands back the same call, so submitit requeues the job and the requeued
job resumes from its last epoch checkpoint. A job that dies without that signal (node failure,
``scancel``, ``kill -9``) shows as *failed* in ``status``; ``submit`` again sends exactly the runs
that are neither done nor running, and they resume from their checkpoints.

Where things go: result files and checkpoints where ``run`` puts them (``data/results``,
``data/checkpoints``; ``$SAMLAB_DATA`` moves both), which must be on a file system every job's
machine sees; submitit's pickled jobs and logs in ``--folder`` (default ``data/submitit``)
``/<profile>/<name>/<job id>/``, and beside them ``jobs.json``, every run's job ids, which
``status`` reads. An experiment registered outside samlab (by a module of yours) is registered in
each job by importing that module there, so it must be importable in the job (on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib
import json
import os
import pickle
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from samlab import data as data_mod
from samlab import experiments, profiles, results, runner, sharing

__all__ = ["EXECUTORS", "INSTALL_HINT", "RunJob", "main", "sbatch_script", "status", "submit"]

EXECUTORS = ("slurm", "local")
#: how to get submitit, in every error that needs it
INSTALL_HINT = "pip install 'samlab[cluster]'"
#: Slurm job states (sacct) of a job that is not over
_SLURM_LIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING")


def _submitit() -> Any:
    try:
        import submitit
    except ImportError as err:
        raise ImportError(
            f"submit and status need submitit, the optional extra samlab[cluster]: {INSTALL_HINT}"
        ) from err
    return submitit


@dataclasses.dataclass(frozen=True)
class RunJob:
    """One (method, seed) of an experiment as a submitit job: calling it is ``runner.run(name, profile,
    only=[label], seeds=[seed])``.

    It follows submitit's checkpointing protocol (``submitit.helpers.Checkpointable``): on pre-emption or
    time-out submitit calls :meth:`checkpoint` and requeues what it returns, the same call, which resumes
    from the run's last epoch checkpoint."""

    name: str
    profile: str
    label: str
    seed: int
    results_root: str
    checkpoint_root: str
    device: str | None = None
    #: modules imported in the job before the run: those that register the experiment, if not samlab
    imports: tuple[str, ...] = ()

    def __call__(self) -> dict[str, Any]:
        for module in self.imports:
            importlib.import_module(module)
        res = runner.run(
            self.name,
            self.profile,
            only=[self.label],
            seeds=[self.seed],
            device=self.device,
            results_root=Path(self.results_root),
            checkpoint_root=Path(self.checkpoint_root),
            progress=False,
        )
        run = next(r for r in res["runs"] if (r["method"], r["seed"]) == (self.label, self.seed))
        return {k: run[k] for k in ("method", "seed", "test_at_val", "last5_test_acc", "job")}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's hook on pre-emption or time-out: requeue the same call (it resumes from its checkpoint)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


# --------------------------------------------------------------------------- where things are


def _roots(results_root: Path | None, checkpoint_root: Path | None, folder: Path | None) -> tuple[Path, Path, Path]:
    """Absolute result, checkpoint and submitit folders, the defaults of ``run`` (``data/...``)."""
    root = data_mod.data_root()
    return (
        Path(results_root if results_root is not None else root / "results").absolute(),
        Path(checkpoint_root if checkpoint_root is not None else root / "checkpoints").absolute(),
        Path(folder if folder is not None else root / "submitit").absolute(),
    )


def _manifest(folder: Path, profile: str, name: str) -> Path:
    return folder / profile / name / "jobs.json"


def _key(label: str, seed: int) -> str:
    return f"{label}|seed{seed}"


def _read_manifest(path: Path) -> dict[str, list[dict[str, Any]]]:
    return json.loads(path.read_text()) if path.exists() else {}


def _imports(name: str) -> tuple[str, ...]:
    """The module that registers experiment ``name``, if it is not samlab's own list."""
    builder = experiments.EXPERIMENTS[name]
    module = getattr(getattr(builder, "func", builder), "__module__", experiments.__name__)
    if module == "__main__":
        raise ValueError(
            f"experiment {name!r} is registered by __main__, which a job cannot import: register it in a module "
            "on PYTHONPATH"
        )
    return () if module == experiments.__name__ else (module,)


# --------------------------------------------------------------------------- submit


def _executor(
    executor: str,
    folder: Path,
    *,
    job_name: str,
    partition: str | None,
    gpus_per_job: int | None,
    cpus_per_job: int | None,
    time_min: int,
    array_parallelism: int | None,
    dry_run: bool,
) -> Any:
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    for flag, value, least in (("time_min", time_min, 1), ("gpus_per_job", gpus_per_job, 0),
                               ("cpus_per_job", cpus_per_job, 1), ("array_parallelism", array_parallelism, 1)):
        if value is not None and (not isinstance(value, int) or value < least):
            raise ValueError(f"{flag} must be an integer >= {least}, got {flag}={value!r}")
    if executor == "local":
        slurm_only = [f for f, v in (("partition", partition), ("cpus_per_job", cpus_per_job),
                                     ("array_parallelism", array_parallelism)) if v is not None]
        if slurm_only:
            raise ValueError(
                f"{', '.join(slurm_only)} apply to executor 'slurm' only (the local executor runs every job at once)"
            )
        if dry_run:
            raise ValueError("dry_run applies to executor 'slurm' (it prints the sbatch parameters)")
    submitit = _submitit()
    if executor == "local":
        ex = submitit.LocalExecutor(folder=str(folder / "%j"))
        ex.update_parameters(timeout_min=time_min, gpus_per_node=gpus_per_job or 0)
        return ex
    cls = submitit.SlurmExecutor
    if not dry_run and cls.affinity() < 0:
        raise RuntimeError("executor 'slurm' needs Slurm (srun and sbatch on PATH), which this machine lacks: "
                           "use dry_run to see the sbatch script, or executor 'local'")
    if dry_run:  # builds the sbatch script without Slurm: the executor only refuses when `srun` is missing

        class _DrySlurmExecutor(submitit.SlurmExecutor):
            @classmethod
            def affinity(cls) -> int:
                return 2

        cls = _DrySlurmExecutor
    ex = cls(folder=str(folder / "%j"))
    params: dict[str, Any] = {"job_name": job_name, "time": time_min}
    for key, value in (("partition", partition), ("gpus_per_node", gpus_per_job), ("cpus_per_task", cpus_per_job),
                       ("array_parallelism", array_parallelism)):
        if value is not None:
            params[key] = value
    ex.update_parameters(**params)
    return ex


def sbatch_script(ex: Any, n_jobs: int) -> str:
    """The sbatch file a Slurm executor would submit for an array of ``n_jobs`` (submitit's own text)."""
    ex.parameters["map_count"] = n_jobs if n_jobs > 1 else None  # what submitit sets for an array
    try:
        return ex._make_submission_file_text(ex._submitit_command_str, "dry-run")  # no public API for the text
    finally:
        ex.parameters.pop("map_count", None)


def submit(
    name: str,
    profile: str | None = None,
    *,
    executor: str = "slurm",
    only: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    folder: Path | None = None,
    partition: str | None = None,
    gpus_per_job: int | None = None,
    cpus_per_job: int | None = None,
    time_min: int = 60,
    array_parallelism: int | None = None,
    device: str | None = None,
    dry_run: bool = False,
    results_root: Path | None = None,
    checkpoint_root: Path | None = None,
) -> dict[str, Any]:
    """Submit one job per (method, seed) of experiment ``name`` that is neither done (in the result file)
    nor running (by ``status``), as one job array.

    Returns ``{"runs": [(label, seed), ...], "jobs": [submitit Job, ...], "parameters": ...}``; with
    ``dry_run`` (Slurm only) nothing is submitted or written and ``"sbatch"`` holds the script."""
    profile = profile or profiles.active()
    exp = experiments.get(name, profile)
    grid = runner.grid(exp, only, seeds)
    imports = _imports(name)
    results_root, checkpoint_root, folder = _roots(results_root, checkpoint_root, folder)
    ex = _executor(
        executor, folder / profile / name, job_name=f"samlab-{name}", partition=partition,
        gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job, time_min=time_min,
        array_parallelism=array_parallelism, dry_run=dry_run,
    )
    now = {(row["method"], row["seed"]): row["state"] for row in status(
        name, profile, folder=folder, results_root=results_root, checkpoint_root=checkpoint_root)}
    todo = [(label, seed) for label, seed in grid if now[(label, seed)] not in ("done", "running")]
    out: dict[str, Any] = {"runs": todo, "jobs": [], "parameters": dict(ex.parameters), "skipped": {
        (label, seed): now[(label, seed)] for label, seed in grid if (label, seed) not in todo}}
    if dry_run:
        out["sbatch"] = sbatch_script(ex, len(todo))
        return out
    if not todo:
        return out
    calls = [RunJob(name, profile, label, seed, str(results_root), str(checkpoint_root), device, imports)
             for label, seed in todo]
    jobs = ex.submit_array(calls)
    manifest = _manifest(folder, profile, name)
    submitted = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    with results.locked(manifest):
        record = _read_manifest(manifest)
        for (label, seed), job in zip(todo, jobs):
            record.setdefault(_key(label, seed), []).append({
                "id": str(job.job_id), "executor": executor, "folder": str(folder / profile / name / "%j"),
                "host": socket.gethostname(), "submitted": submitted,
            })
        results.write(manifest, record)
    out["jobs"] = jobs
    return out


# --------------------------------------------------------------------------- status


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")  # guard against a reused pid where /proc exists
    return not cmdline.exists() or b"submitit" in cmdline.read_bytes()


def _slurm_states(entries: list[dict[str, Any]]) -> dict[str, str]:
    """Slurm's state of each job (one ``sacct`` call for all, through submitit's watcher); ``UNKNOWN``
    where sacct does not answer."""
    if not entries:
        return {}
    watcher = _submitit().SlurmJob.watcher
    for entry in entries:
        watcher.register_job(entry["id"])
    watcher.update()  # logs a warning and keeps what it knew if sacct fails
    return {entry["id"]: watcher.get_state(entry["id"], mode="cache") for entry in entries}


def _job_state(entry: dict[str, Any], slurm_state: str | None) -> tuple[str, str, str | None]:
    """(state, detail, log) of one submitted job, from submitit's folder (and Slurm's state)."""
    from submitit.core.utils import JobPaths

    paths = JobPaths(entry["folder"], job_id=entry["id"], task_id=0)
    log = str(paths.stderr)
    if paths.result_pickle.exists():
        with paths.result_pickle.open("rb") as f:
            outcome, value = pickle.load(f)
        if outcome == "error":
            last = [line for line in str(value).strip().splitlines() if line.strip()][-1:]
            return "failed", f"job {entry['id']} raised: {last[0] if last else '?'}", log
        return "failed", f"job {entry['id']} finished, but its run is not in the result file", log
    if entry["executor"] == "local":
        if entry["host"] != socket.gethostname():
            return "unknown", f"local job {entry['id']} on host {entry['host']}", log
        if _pid_alive(int(entry["id"])):
            return "running", f"local job {entry['id']}", log
        return "failed", f"local job {entry['id']} ended without a result (killed?)", log
    state = slurm_state or "UNKNOWN"
    if state.upper() == "UNKNOWN":
        return "unknown", f"Slurm job {entry['id']}: state unknown (is sacct available?)", log
    if state.upper().split()[0] in _SLURM_LIVE:
        return "running", f"Slurm job {entry['id']} {state}", log
    return "failed", f"Slurm job {entry['id']} {state} without a result", log


def _checkpoint_epoch(path: Path) -> int | None:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["epoch"])
    except Exception:  # noqa: BLE001 - a checkpoint being replaced right now: no epoch to show
        return None


def status(
    name: str,
    profile: str | None = None,
    *,
    folder: Path | None = None,
    results_root: Path | None = None,
    checkpoint_root: Path | None = None,
    live_min: float = 15.0,
) -> list[dict[str, Any]]:
    """One row per (method, seed) of experiment ``name``: ``state`` is ``done`` (in the result file),
    ``running`` (its last job is pending or running, or, with no job, its checkpoint was written in the
    last ``live_min`` minutes: a ``run`` process), ``failed`` (its last job ended without the run in the
    file; ``log`` is the job's error log), ``shared`` (another experiment has trained the very same run:
    ``run``/``submit`` store a reference to it, :func:`samlab.runner.shared_finished`), ``missing`` (never submitted, or
    stopped without a job), or
    ``unknown`` (a job whose state cannot be read from here). ``detail`` adds the job and the epoch of
    the run's checkpoint."""
    profile = profile or profiles.active()
    exp = experiments.get(name, profile)
    results_root, checkpoint_root, folder = _roots(results_root, checkpoint_root, folder)
    done = runner.finished(results.path(name, profile, results_root), exp.config())  # the runner's own rule
    shared = runner.shared_finished(exp, profile, results_root)  # trained by another experiment: referred to, not run
    manifest = _read_manifest(_manifest(folder, profile, name))
    latest = {(label, seed): manifest[_key(label, seed)][-1] for label in exp.methods for seed in exp.seeds
              if manifest.get(_key(label, seed)) and (label, seed) not in done}  # each unfinished run's last job
    slurm = _slurm_states([entry for entry in latest.values() if entry["executor"] == "slurm"])
    rows = []
    for label in exp.methods:
        for seed in exp.seeds:
            row: dict[str, Any] = {"method": label, "seed": seed, "state": "missing", "detail": "", "log": None}
            jobs = manifest.get(_key(label, seed), [])
            if (label, seed) in done:
                run_ = done[(label, seed)]
                src, stored = run_.get("shared_from"), "stored there" if sharing.is_reference(run_) else "a copy kept here"
                row["state"], row["detail"] = "done", (f"trained by {src['experiment']} ({src['method']}), {stored}" if src
                                                       else " ".join(f"{k} {v}" for k, v in (run_.get("job") or {}).items()))
                rows.append(row)
                continue
            if (label, seed) in shared:
                other, original = shared[(label, seed)]
                row["state"], row["detail"] = "shared", f"trained by {other} ({original['method']}): referred to when run"
                rows.append(row)
                continue
            if jobs:
                row["state"], row["detail"], row["log"] = _job_state(jobs[-1], slurm.get(jobs[-1]["id"]))
            ckpt = runner.checkpoint_path(exp, profile, label, seed, checkpoint_root)
            if ckpt.exists():
                epochs = {**exp.fit, **exp.methods[label].get("fit", {})}.get("epochs")
                age = time.time() - ckpt.stat().st_mtime
                if not jobs and age < 60 * live_min:
                    row["state"], row["detail"] = "running", f"no job; checkpoint written {age:.0f} s ago"
                epoch = _checkpoint_epoch(ckpt)
                at = f"checkpoint at epoch {'?' if epoch is None else epoch}/{epochs}"
                row["detail"] = "; ".join(d for d in (row["detail"], at) if d)
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m samlab.experiments", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("submit", help="one job per (method, seed) as a Slurm (or local) job array")
    p.add_argument("name", help="experiment name")
    p.add_argument("--profile", default=None, choices=profiles.PROFILES)
    p.add_argument("--only", default=None, help="comma-separated method labels")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (a subset of the experiment's)")
    p.add_argument("--executor", default="slurm", choices=EXECUTORS)
    p.add_argument("--partition", default=None, help="Slurm partition")
    p.add_argument("--gpus-per-job", type=int, default=None)
    p.add_argument("--cpus-per-job", type=int, default=None, help="Slurm --cpus-per-task")
    p.add_argument("--time-min", type=int, default=60, help="time limit of each job, minutes (default 60)")
    p.add_argument("--array-parallelism", type=int, default=None, help="at most this many Slurm jobs at once")
    p.add_argument("--device", default=None, help="torch device in the job (default: CUDA if present)")
    p.add_argument("--folder", default=None, help="submitit's folder (default data/submitit)")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch parameters and script; submit nothing")
    p.add_argument("--wait", action="store_true", help="wait for the jobs and report each one")
    s = sub.add_parser("status", help="done / running / failed / missing for every (method, seed)")
    s.add_argument("name", help="experiment name")
    s.add_argument("--profile", default=None, choices=profiles.PROFILES)
    s.add_argument("--folder", default=None, help="submitit's folder (default data/submitit)")
    s.add_argument("--live-min", type=float, default=15.0,
                   help="a run with no job whose checkpoint is younger than this (minutes) counts as running")
    return parser


def _seeds(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"seeds must be comma-separated integers, e.g. 0,1, got {text!r}") from None


def _print_status(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        log = f"  log: {row['log']}" if row["state"] == "failed" and row["log"] else ""
        print(f"  {row['method']:16s} seed {row['seed']:<3d} {row['state']:8s} {row['detail']}{log}")
    counts = {s: sum(r["state"] == s for r in rows) for s in ("done", "shared", "running", "failed", "missing", "unknown")}
    print("  " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m samlab.experiments submit | status``; every other command goes to :func:`samlab.runner.main`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("submit", "status"):
        return runner.main(argv)
    args = _parser().parse_args(argv)
    try:
        return _command(args)
    except (ImportError, ValueError, RuntimeError) as err:  # submitit or Slurm missing, a bad parameter
        print(f"error: {err}", file=sys.stderr)
        return 2


def _command(args: argparse.Namespace) -> int:
    folder = Path(args.folder) if args.folder else None
    if args.cmd == "status":
        profile = args.profile or profiles.active()
        print(f"{args.name} ({profile}): {results.path(args.name, profile)}")
        _print_status(status(args.name, profile, folder=folder, live_min=args.live_min))
        return 0
    out = submit(
        args.name,
        args.profile,
        executor=args.executor,
        only=args.only.split(",") if args.only else None,
        seeds=_seeds(args.seeds),
        folder=folder,
        partition=args.partition,
        gpus_per_job=args.gpus_per_job,
        cpus_per_job=args.cpus_per_job,
        time_min=args.time_min,
        array_parallelism=args.array_parallelism,
        device=args.device,
        dry_run=args.dry_run,
    )
    for (label, seed), state in out["skipped"].items():
        print(f"  {label} seed {seed}: {state}, not submitted")
    if args.dry_run:
        print(f"would submit {len(out['runs'])} jobs: " + ", ".join(f"{lab} seed {s}" for lab, s in out["runs"]))
        print(f"executor.parameters: {json.dumps(out['parameters'], sort_keys=True)}")
        print(out["sbatch"])
        return 0
    for (label, seed), job in zip(out["runs"], out["jobs"]):
        print(f"  {label} seed {seed}: job {job.job_id}, log {job.paths.stdout}")
    if not out["jobs"]:
        print("nothing to submit")
    if not args.wait:
        return 0
    failed = 0
    for (label, seed), job in zip(out["runs"], out["jobs"]):
        try:
            r = job.result()
            at_val = "—" if r["test_at_val"] is None else f"{r['test_at_val']:.3f}"   # None without a validation split
            print(f"  {label} seed {seed}: done, test at val. epoch {at_val}, last-5 mean {r['last5_test_acc']:.3f}")
        except Exception as err:  # noqa: BLE001 - report every job, then fail
            failed += 1
            print(f"  {label} seed {seed}: failed ({type(err).__name__}), log {job.paths.stderr}")
    return 1 if failed else 0
