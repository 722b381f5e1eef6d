"""Packaging: pip and conda agree, the documented test command is the one CI runs, the
modules declare their public names, and importing samlab changes nothing around it."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import samlab

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
#: pip name -> conda-forge name, where they differ
PIP_TO_CONDA = {"torch": "pytorch"}
_SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*>=\s*([0-9][0-9.]*)$")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _minimums(specs: list[str], rename: dict[str, str] | None = None) -> dict[str, str]:
    """``["torch>=2.4", ...]`` -> ``{"pytorch": "2.4", ...}``; every entry must be name>=version
    (an environment marker after ``;`` is allowed and ignored)."""
    out: dict[str, str] = {}
    for spec in specs:
        m = _SPEC.match(spec.split(";", 1)[0].strip())
        assert m, f"{spec!r} is not of the form name>=version"
        name = m.group(1).lower().replace("_", "-")
        name = (rename or {}).get(name, name)
        assert name not in out, f"{name} listed twice"
        out[name] = m.group(2)
    return out


def _environment_yml(text: str) -> tuple[list[str], list[str]]:
    """The conda and pip entries under ``dependencies:`` of a flat environment.yml."""
    conda: list[str] = []
    pip: list[str] = []
    section = None
    pip_indent = None
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            section = line.split(":", 1)[0]
            continue
        if section != "dependencies":
            continue
        item = line.strip()
        assert item.startswith("- "), f"unexpected line in environment.yml: {raw!r}"
        item = item[2:].strip()
        if pip_indent is not None and indent > pip_indent:
            pip.append(item)
            continue
        pip_indent = None
        if item == "pip:":
            pip_indent = indent
        else:
            conda.append(item)
    return conda, pip


def test_environment_yml_parser_agrees_with_yaml():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = _environment_yml((ROOT / "environment.yml").read_text())
    assert conda == [d for d in doc["dependencies"] if isinstance(d, str)]
    assert pip == next(d["pip"] for d in doc["dependencies"] if isinstance(d, dict))


def test_pip_and_conda_dependencies_agree():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    pip_side = _minimums(project["dependencies"] + extras["dev"], PIP_TO_CONDA)
    conda, pip = _environment_yml((ROOT / "environment.yml").read_text())
    conda_side = _minimums([c for c in conda if c != "pip" and not c.startswith("python")])
    assert pip_side == conda_side
    assert "pip" in conda
    assert "-e ." in pip  # samlab itself, editable, so that notebooks import it
    python = [c for c in conda if c.startswith("python")]
    assert python == [f"python{project['requires-python']}"]


def test_dev_extra_covers_the_notebooks_and_is_what_make_installs():
    extras = _pyproject()["project"]["optional-dependencies"]
    assert set(extras["notebooks"]) <= set(extras["dev"])
    assert {"pytest", "nbval"} <= set(_minimums(extras["dev"]))
    assert ".[dev]" in (ROOT / "Makefile").read_text()


def test_version_matches():
    assert samlab.__version__ == _pyproject()["project"]["version"]


def test_readme_and_ci_use_make_test():
    assert "make test" in (ROOT / "README.md").read_text()
    ci = ROOT / ".ci" / "run"
    commands = [ln.strip() for ln in ci.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert "make test" in commands
    assert os.access(ci, os.X_OK), ".ci/run must be executable"
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe and "pytest" in recipe.group(1)


def _public_modules() -> list[str]:
    names = ["samlab"]
    for info in pkgutil.walk_packages(samlab.__path__, "samlab."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("module", _public_modules())
def test_every_module_declares_all(module):
    mod = importlib.import_module(module)
    assert isinstance(getattr(mod, "__all__", None), (list, tuple)), f"{module} has no explicit __all__"
    names = list(mod.__all__)
    assert len(names) == len(set(names)), f"{module}.__all__ repeats a name"
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"{module}.__all__ names missing attributes {missing}"


def test_importing_samlab_has_no_side_effects(tmp_path):
    """In a fresh interpreter: no files created, RNG streams and torch settings untouched."""
    home, cwd, data = tmp_path / "home", tmp_path / "cwd", tmp_path / "data"
    home.mkdir()
    cwd.mkdir()
    script = textwrap.dedent(
        """
        import json, pkgutil, importlib, random
        import numpy as np, torch
        def snapshot():
            return {
                "torch": torch.get_rng_state().tolist(),
                "numpy": np.random.get_state()[1].tolist(),
                "python": repr(random.getstate()),
                "dtype": str(torch.get_default_dtype()),
                "threads": torch.get_num_threads(),
                "deterministic": torch.are_deterministic_algorithms_enabled(),
                "grad": torch.is_grad_enabled(),
            }
        before = snapshot()
        import samlab
        for info in pkgutil.walk_packages(samlab.__path__, "samlab."):
            importlib.import_module(info.name)
        after = snapshot()
        print(json.dumps({k: before[k] == after[k] for k in before}))
        """
    )
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "SAMLAB_DATA": str(data),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),  # matplotlib's own font cache is not samlab's doing
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    res = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    unchanged = json.loads(res.stdout.strip().splitlines()[-1])
    assert all(unchanged.values()), unchanged
    assert list(cwd.iterdir()) == [] and list(home.iterdir()) == []
    assert not data.exists()


def test_make_help_lists_every_target():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    phony = set(re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split())
    assert targets == phony, "every target is .PHONY and every .PHONY entry is a target"
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    res = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    listed = {ln.split()[1]: ln for ln in res.stdout.splitlines() if ln.strip().startswith("make ")}
    assert set(listed) == targets, f"make help misses {targets - set(listed)}"
    assert all(len(ln.split()) > 2 for ln in listed.values()), "each target has a one-line description"


def test_make_lab_allows_root_and_picks_a_free_port():
    recipe = re.search(r"^lab:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert '"$$(id -u)" = 0' in recipe and "--allow-root" in recipe
    assert "free-port" in recipe and "--port=$$port" in recipe


def test_the_course_tools_do_not_import_torch():
    """``import samlab.course`` (student copies, the site) loads no torch: the student-copy tests'
    workers stay small beside their kernels; ``samlab.fit`` and the other shortcuts still resolve."""
    code = ("import sys, samlab.course; assert 'torch' not in sys.modules, 'torch imported'; "
            "import samlab; assert samlab.fit is samlab.train.fit and samlab.load is samlab.data.load; "
            "assert 'torch' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_git_commit_is_declared_only_where_there_is_no_checkout(monkeypatch):
    from samlab import provenance

    monkeypatch.setenv("SAMLAB_GIT_COMMIT", "0123abcd")
    assert "declared" not in provenance.git_commit()  # a real checkout: git decides
    def no_git(*args, **kwargs):
        raise OSError("git: not found")
    monkeypatch.setattr(provenance.subprocess, "run", no_git)
    assert provenance.git_commit() == "0123abcd (declared, no git checkout)"
    monkeypatch.delenv("SAMLAB_GIT_COMMIT")
    assert provenance.git_commit() == "unknown"
