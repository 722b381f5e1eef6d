"""A tiny experiment for the cluster tests, and a fault to inject into a job.

Importing this module registers ``tiny-cluster``. submitit's job processes import it too (the
experiment's builder lives here, so :class:`samlab.cluster.RunJob` imports this module in the job;
the tests put ``tests/`` on ``PYTHONPATH``), so a job sees the same experiment as the test.

``SAMLAB_TEST_FAULT`` (JSON ``{"method", "seed", "epoch", "signal", "trace"}``), when set in a job,
wraps ``train.fit`` for that one (method, seed): every trained epoch appends ``"<pid> <epoch>"`` to
``trace``, and the first time epoch ``epoch`` is reached (before its checkpoint is written) the
process sends itself ``signal``: ``KILL`` (the job dies: a node failure) or ``USR2`` (submitit's
pre-emption signal). ``<trace>.fired`` marks that it fired, so a requeued or resubmitted job runs on.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from samlab import experiments, train
from tiny_experiment import tiny_experiment


def tiny_cluster(profile: str) -> experiments.Experiment:
    return tiny_experiment("tiny-cluster", epochs=4, description="two methods on noisy digits, for the cluster tests")


experiments.EXPERIMENTS["tiny-cluster"] = tiny_cluster


def _inject(fault: dict) -> None:
    real_fit = train.fit
    trace, fired = Path(fault["trace"]), Path(fault["trace"] + ".fired")

    def fit(model, method, data, config, **kwargs):
        if (method.name, config.seed) != (fault["method"], fault["seed"]):
            return real_fit(model, method, data, config, **kwargs)

        def on_epoch(epoch, model):
            if epoch > 0:
                with trace.open("a") as f:
                    f.write(f"{os.getpid()} {epoch}\n")
            if epoch == fault["epoch"] and not fired.exists():
                fired.touch()
                # KILL ends the process here; with USR2, submitit's handler runs as os.kill returns:
                # it checkpoints (RunJob.checkpoint), requeues and exits
                os.kill(os.getpid(), getattr(signal, "SIG" + fault["signal"]))

        return real_fit(model, method, data, config, on_epoch=on_epoch)

    train.fit = fit


if os.environ.get("SAMLAB_TEST_FAULT"):
    _inject(json.loads(os.environ["SAMLAB_TEST_FAULT"]))
