"""samlab.cluster: an experiment's (method, seed) grid as submitit jobs, checked against one process.

The local executor starts real subprocesses, so these tests run the same code as a Slurm job,
except for Slurm itself: four jobs must write the very result file a single ``runner.run`` writes;
a job killed mid-run (``kill -9``) shows as failed and, submitted again, resumes from its checkpoint;
a pre-empted job (submitit's ``USR2``) is requeued and resumes. The Slurm side is checked through its
dry run (the sbatch script submitit would submit). They need submitit (``samlab[cluster]``, in the
dev extra) and are skipped without it, except the test of that error message.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch

import cluster_experiments  # registers "tiny-cluster" (jobs import it too)
from samlab import cluster, experiments, results, runner

try:
    import submitit
except ImportError:  # pragma: no cover - the dev extra installs it
    submitit = None

needs_submitit = pytest.mark.skipif(
    submitit is None, reason="submitit is not installed: pip install 'samlab[cluster]' (the dev extra has it)"
)
TESTS = Path(__file__).resolve().parent
NAME, PROFILE = "tiny-cluster", "smoke"
GRID = [("SGD", 0), ("SAM", 0), ("SGD", 1), ("SAM", 1)]  # seed-major, as submitted

#: what differs between two runs of the same computation: clocks, dates and where it ran
_VOLATILE_RESULT = {"date"}
_VOLATILE_RUN = {"wall_seconds", "seconds_per_epoch", "images_per_second", "job"}
_VOLATILE_EPOCH = {"seconds", "images_per_second"}


def comparable(result: dict) -> dict:
    """A result file without its clocks, dates and job ids (the runs keep their order)."""
    out = {k: v for k, v in result.items() if k not in _VOLATILE_RESULT}
    out["runs"] = [
        {**{k: v for k, v in run.items() if k not in _VOLATILE_RUN},
         "history": [{k: v for k, v in rec.items() if k not in _VOLATILE_EPOCH} for rec in run["history"]]}
        for run in result["runs"]
    ]
    return json.loads(json.dumps(out))


@pytest.fixture(scope="module", autouse=True)
def tiny_cluster_registered():
    """``tiny-cluster`` for this module's tests only (importing cluster_experiments registered it)."""
    experiments.EXPERIMENTS[NAME] = cluster_experiments.tiny_cluster
    yield
    experiments.EXPERIMENTS.pop(NAME, None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The result file of one process training the whole grid (the independent reference)."""
    root = tmp_path_factory.mktemp("reference")
    runner.run(NAME, PROFILE, results_root=root / "r", checkpoint_root=root / "c", progress=False)
    return json.loads((root / "r" / PROFILE / f"{NAME}.json").read_text())


@pytest.fixture
def job_env(tmp_path, monkeypatch) -> Path:
    """Jobs import samlab from this checkout and this test's experiment module, use the test process's
    thread count (so their arithmetic is the reference's), and keep their files under ``tmp_path``."""
    path = [str(TESTS.parent), str(TESTS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    monkeypatch.setenv("SAMLAB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("SAMLAB_TEST_FAULT", raising=False)
    return tmp_path / "data"


def fault(monkeypatch, tmp_path, **spec) -> Path:
    """Inject ``cluster_experiments``' fault into the jobs started from now on; returns its trace file."""
    trace = tmp_path / "trace.txt"
    monkeypatch.setenv("SAMLAB_TEST_FAULT", json.dumps({**spec, "trace": str(trace)}))
    return trace


def attempts(trace: Path) -> list[list[int]]:
    """The epochs trained by each process of the faulty run, in order of the processes."""
    by_pid: dict[str, list[int]] = {}
    for line in trace.read_text().split("\n"):
        if line:
            pid, epoch = line.split()
            by_pid.setdefault(pid, []).append(int(epoch))
    return list(by_pid.values())


def saved(data: Path) -> dict:
    return json.loads((data / "results" / PROFILE / f"{NAME}.json").read_text())


@needs_submitit
@pytest.mark.slow
def test_four_local_jobs_write_the_file_one_process_writes(job_env, reference):
    # four jobs, submitted as two arrays of two (seed by seed): the local executor starts an array's
    # jobs all at once, and four processes holding torch beside pytest would cost the suite its memory
    # budget; the second submission also merges into a file the first one wrote.
    outs = [cluster.submit(NAME, PROFILE, executor="local", seeds=[seed], time_min=10) for seed in (0,)]
    done = [job.result() for job in outs[0]["jobs"]]  # raises if a job failed
    outs.append(cluster.submit(NAME, PROFILE, executor="local", seeds=[1], time_min=10))
    done += [job.result() for job in outs[1]["jobs"]]
    jobs = outs[0]["jobs"] + outs[1]["jobs"]
    runs = outs[0]["runs"] + outs[1]["runs"]
    assert sorted(runs) == sorted(GRID) and len(jobs) == 4
    assert [(d["method"], d["seed"]) for d in done] == runs

    result = saved(job_env)
    assert comparable(result) == comparable(reference)  # same runs, same histories, same order
    # each run records the job that made it and the host; the single process, the host only
    ids = {key: job.job_id for key, job in zip(runs, jobs)}
    assert len(set(ids.values())) == 4
    for run in result["runs"]:
        assert run["job"] == {"id": ids[(run["method"], run["seed"])], "host": socket.gethostname()}
    assert all(run["job"] == {"host": socket.gethostname()} for run in reference["runs"])

    assert [(r["method"], r["seed"], r["state"]) for r in cluster.status(NAME, PROFILE)] == [
        ("SGD", 0, "done"), ("SGD", 1, "done"), ("SAM", 0, "done"), ("SAM", 1, "done")]
    again = cluster.submit(NAME, PROFILE, executor="local")
    assert again["runs"] == [] and again["jobs"] == [] and set(again["skipped"].values()) == {"done"}


@needs_submitit
@pytest.mark.slow
def test_a_killed_job_is_failed_in_status_and_resumes_when_submitted_again(job_env, reference, tmp_path, monkeypatch):
    trace = fault(monkeypatch, tmp_path, method="sam", seed=1, epoch=3, signal="KILL")
    for job in cluster.submit(NAME, PROFILE, executor="local", seeds=[0], time_min=10)["jobs"]:
        job.result()  # two jobs at a time (memory: see the test above)
    out = cluster.submit(NAME, PROFILE, executor="local", seeds=[1], time_min=10)
    for (label, seed), job in zip(out["runs"], out["jobs"]):
        if (label, seed) == ("SAM", 1):
            job.wait()  # (job.result() would wait 15 s for a result file before raising)
            assert not job.paths.result_pickle.exists()  # it died: no result, no error pickled
        else:
            job.result()
    assert attempts(trace) == [[1, 2, 3]]  # killed in epoch 3, before its checkpoint
    assert [(r["method"], r["seed"]) for r in saved(job_env)["runs"]] == [("SGD", 0), ("SGD", 1), ("SAM", 0)]

    rows = {(r["method"], r["seed"]): r for r in cluster.status(NAME, PROFILE)}
    killed = rows[("SAM", 1)]
    assert killed["state"] == "failed" and "ended without a result" in killed["detail"]
    assert "checkpoint at epoch 2/4" in killed["detail"] and Path(killed["log"]).is_file()
    assert [r["state"] for key, r in rows.items() if key != ("SAM", 1)] == ["done"] * 3

    again = cluster.submit(NAME, PROFILE, executor="local", time_min=10)
    assert again["runs"] == [("SAM", 1)]  # only the failed run goes out again
    again["jobs"][0].result()
    assert attempts(trace) == [[1, 2, 3], [3, 4]]  # resumed after epoch 2, its last checkpoint
    assert comparable(saved(job_env)) == comparable(reference)


@needs_submitit
@pytest.mark.slow
def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint(job_env, reference, tmp_path, monkeypatch):
    trace = fault(monkeypatch, tmp_path, method="sgd", seed=0, epoch=2, signal="USR2")
    # 30 minutes: a signal in the first 20 is a pre-emption to submitit, not a time-out
    out = cluster.submit(NAME, PROFILE, executor="local", only=["SGD"], seeds=[0], time_min=30)
    (job,) = out["jobs"]
    assert job.result()["method"] == "SGD"  # the same job, requeued by submitit through RunJob.checkpoint
    assert attempts(trace) == [[1, 2], [2, 3, 4]]  # two processes: the second resumed after epoch 1
    assert "this job is preempted" in job.stderr()
    (run,) = saved(job_env)["runs"]
    assert comparable({"runs": [run]}) == comparable({"runs": [reference["runs"][0]]})
    assert run["job"]["id"] == job.job_id


@needs_submitit
def test_slurm_dry_run_prints_the_sbatch_script_and_submits_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SAMLAB_DATA", str(tmp_path))
    argv = ["submit", NAME, "--profile", PROFILE, "--executor", "slurm", "--dry-run", "--partition", "gpu",
            "--gpus-per-job", "1", "--cpus-per-job", "4", "--time-min", "30", "--array-parallelism", "2"]
    assert cluster.main(argv) == 0
    text = capsys.readouterr().out
    assert "would submit 4 jobs: SGD seed 0, SAM seed 0, SGD seed 1, SAM seed 1" in text
    lines = set(text.splitlines())
    for flag in ("--array=0-3%2", "--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=4", "--time=30",
                 "--job-name=samlab-tiny-cluster", "--signal=USR2@90"):
        assert f"#SBATCH {flag}" in lines, flag
    assert "-m submitit.core._submit" in text
    assert not (tmp_path / "submitit" / PROFILE / NAME / "jobs.json").exists()
    # one run: a single job, no array
    assert cluster.main(argv[:7] + ["--only", "SAM", "--seeds", "1"]) == 0
    assert "#SBATCH --array" not in capsys.readouterr().out
    if submitit.SlurmExecutor.affinity() < 0:  # no Slurm here: a real submission says so and what to do
        assert cluster.main(argv[:6]) == 2
        assert "needs Slurm" in capsys.readouterr().err


@needs_submitit
def test_bad_parameters_are_refused_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAMLAB_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=r"executor must be one of \('slurm', 'local'\), got 'pbs'"):
        cluster.submit(NAME, PROFILE, executor="pbs")
    with pytest.raises(ValueError, match="partition, array_parallelism apply to executor 'slurm' only"):
        cluster.submit(NAME, PROFILE, executor="local", partition="gpu", array_parallelism=2)
    with pytest.raises(ValueError, match="dry_run applies to executor 'slurm'"):
        cluster.submit(NAME, PROFILE, executor="local", dry_run=True)
    with pytest.raises(ValueError, match="time_min must be an integer >= 1, got time_min=0"):
        cluster.submit(NAME, PROFILE, executor="slurm", dry_run=True, time_min=0)
    with pytest.raises(ValueError, match="only must name methods of 'tiny-cluster'"):
        cluster.submit(NAME, PROFILE, executor="slurm", dry_run=True, only=["ADAM"])
    with pytest.raises(ValueError, match="seeds must be among the seeds of 'tiny-cluster'"):
        cluster.submit(NAME, PROFILE, executor="slurm", dry_run=True, seeds=[7])
    with pytest.raises(ValueError, match="experiment must be one of"):
        cluster.status("nope", PROFILE)
    assert cluster.main(["submit", NAME, "--profile", PROFILE, "--executor", "local", "--partition", "gpu"]) == 2
    assert "partition apply to executor 'slurm' only" in capsys.readouterr().err
    assert cluster.main(["submit", NAME, "--profile", PROFILE, "--seeds", "0,one", "--dry-run"]) == 2
    assert "seeds must be comma-separated integers, e.g. 0,1, got '0,one'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse names the choices
        cluster.main(["submit", NAME, "--executor", "pbs"])
    assert "invalid choice: 'pbs'" in capsys.readouterr().err


def test_without_submitit_submit_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAMLAB_DATA", str(tmp_path))
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'samlab\[cluster\]'"):
        cluster.submit(NAME, PROFILE, executor="local")
    assert cluster.main(["submit", NAME, "--profile", PROFILE, "--executor", "slurm", "--dry-run"]) == 2
    assert "pip install 'samlab[cluster]'" in capsys.readouterr().err


def test_the_cli_hands_other_commands_to_the_runner(capsys):
    assert cluster.main(["list"]) == 0
    assert NAME in capsys.readouterr().out


def test_the_cluster_extra_is_in_the_dev_extra():
    import tomllib

    extras = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["cluster"] and set(extras["cluster"]) <= set(extras["dev"])


@needs_submitit
def test_status_of_runs_without_jobs_and_of_a_live_local_job(tmp_path, monkeypatch):
    """missing (nothing yet), running (a checkpoint written just now by a `run` process, no job; or a live
    local job), missing again once that checkpoint is older than live_min."""
    import subprocess

    from samlab import train

    monkeypatch.setenv("SAMLAB_DATA", str(tmp_path))
    assert {r["state"] for r in cluster.status(NAME, PROFILE)} == {"missing"}

    real_fit = train.fit

    def interrupted_fit(model, method, data, config, **kwargs):
        def on_epoch(epoch, model):
            if epoch == 3:
                raise KeyboardInterrupt  # after epoch 2's checkpoint
        return real_fit(model, method, data, config, on_epoch=on_epoch)

    monkeypatch.setattr(train, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        runner.run(NAME, PROFILE, only=["SAM"], seeds=[1], progress=False)
    rows = {(r["method"], r["seed"]): r for r in cluster.status(NAME, PROFILE)}
    assert rows[("SAM", 1)]["state"] == "running" and "checkpoint at epoch 2/4" in rows[("SAM", 1)]["detail"]
    assert rows[("SAM", 0)]["state"] == "missing"
    stale = {(r["method"], r["seed"]): r for r in cluster.status(NAME, PROFILE, live_min=0)}[("SAM", 1)]
    assert stale["state"] == "missing" and stale["detail"] == "checkpoint at epoch 2/4"

    # a local job whose controller process is alive (its command line names submitit) is running
    code = "import time; print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, "submitit"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"  # started (its command line is its own)
        manifest = tmp_path / "submitit" / PROFILE / NAME / "jobs.json"
        results.write(manifest, {"SGD|seed0": [{"id": str(proc.pid), "executor": "local", "host": socket.gethostname(),
                                               "folder": str(manifest.parent / "%j"), "submitted": "now"}]})
        row = next(r for r in cluster.status(NAME, PROFILE) if (r["method"], r["seed"]) == ("SGD", 0))
        assert row["state"] == "running" and row["detail"] == f"local job {proc.pid}"
    finally:
        proc.kill()
        proc.wait()
    row = next(r for r in cluster.status(NAME, PROFILE) if (r["method"], r["seed"]) == ("SGD", 0))
    assert row["state"] == "failed" and "ended without a result" in row["detail"]


@needs_submitit
def test_status_reads_slurm_job_states_from_sacct(tmp_path, monkeypatch):
    """Slurm jobs: one sacct call (here a stand-in script printing sacct's --parsable2 table) gives each
    run's state: pending or running -> running; failed or cancelled without a result -> failed, with the log."""
    import random

    base = str(random.randrange(10**6, 10**7))  # fresh ids: submitit's watcher caches finished jobs
    states = {"SGD|seed0": "RUNNING", "SGD|seed1": "PENDING", "SAM|seed0": "FAILED", "SAM|seed1": "CANCELLED by 0"}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    table = "\n".join(["JobID|State|NodeList"] + [f"{base}_{i}|{s}|node{i}" for i, s in enumerate(states.values())])
    (bin_dir / "sacct").write_text(f"#!/bin/sh\ncat <<'END'\n{table}\nEND\n")
    (bin_dir / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SAMLAB_DATA", str(tmp_path))
    manifest = tmp_path / "submitit" / PROFILE / NAME / "jobs.json"
    results.write(manifest, {key: [{"id": f"{base}_{i}", "executor": "slurm", "host": "login1", "submitted": "now",
                                    "folder": str(manifest.parent / "%j")}] for i, key in enumerate(states)})
    rows = {(r["method"], r["seed"]): r for r in cluster.status(NAME, PROFILE)}
    assert [rows[k]["state"] for k in [("SGD", 0), ("SGD", 1), ("SAM", 0), ("SAM", 1)]] == [
        "running", "running", "failed", "failed"]
    assert rows[("SGD", 1)]["detail"] == f"Slurm job {base}_1 PENDING"
    assert rows[("SAM", 0)]["log"] == str(manifest.parent / f"{base}_2" / f"{base}_2_0_log.err")
    assert rows[("SAM", 1)]["detail"] == f"Slurm job {base}_3 CANCELLED by 0 without a result"


def test_status_names_runs_another_experiment_has_trained(tmp_path, monkeypatch, capsys):
    import dataclasses

    monkeypatch.setenv("SAMLAB_DATA", str(tmp_path))
    twin = lambda profile: dataclasses.replace(  # noqa: E731
        cluster_experiments.tiny_cluster(profile), name="tiny-cluster-twin", description="the same SGD runs")
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny-cluster-twin", twin)
    runner.run(NAME, PROFILE, only=["SGD"], seeds=[0], progress=False)
    rows = {(r["method"], r["seed"]): r for r in cluster.status("tiny-cluster-twin", PROFILE)}
    assert rows[("SGD", 0)]["state"] == "shared" and NAME in rows[("SGD", 0)]["detail"]
    assert {r["state"] for key, r in rows.items() if key != ("SGD", 0)} == {"missing"}
    cluster._print_status(list(rows.values()))
    assert capsys.readouterr().out.splitlines()[-1] == f"  1 shared, {len(rows) - 1} missing"
    # once the twin is run, the run is done there: a reference to the file that stores it
    runner.run("tiny-cluster-twin", PROFILE, only=["SGD"], seeds=[0], progress=False)
    rows = {(r["method"], r["seed"]): r for r in cluster.status("tiny-cluster-twin", PROFILE)}
    assert (rows[("SGD", 0)]["state"], rows[("SGD", 0)]["detail"]) == ("done", f"trained by {NAME} (SGD), stored there")
    # ... until that file is gone: then it is shared no more, and missing
    results.path(NAME, PROFILE).unlink()
    assert cluster.status("tiny-cluster-twin", PROFILE)[0]["state"] == "missing"
