"""The instructor route through nbgrader itself, on notebook 00: a source notebook from
``samlab.course.nbgrader_source``, ``nbgrader generate_assignment``, two submissions (one right,
one with a wrong first answer), ``nbgrader autograde``, and the scores in nbgrader's gradebook;
and ``make student``'s copies agree with ``generate_assignment``'s release copy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbgrader", reason="nbgrader is not installed (it needs Python >= 3.11)")

from samlab import course  # noqa: E402

NAME = "00_label_noise_memorisation.ipynb"
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def _nbgrader(course_dir, *args):
    env = {**os.environ, "SAMLAB_PROFILE": "smoke", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args, "--Execute.timeout=600", "--log-level=WARN"],
        cwd=course_dir, env=env, capture_output=True, text=True, timeout=900,
    )
    assert res.returncode == 0, f"nbgrader {args[0]} failed:\n{res.stdout}\n{res.stderr}"
    return res


def _solutions(nb) -> list[str]:
    """The solution code of each code cell with a solution region, in order (markers dropped)."""
    out = []
    for cell in nb.cells:
        lines = cell.source.split("\n")
        marks = [i for i, line in enumerate(lines) if line.strip() in ("### BEGIN SOLUTION", "### END SOLUTION")]
        if cell.cell_type == "code" and marks:
            out.append("\n".join(lines[marks[0] + 1 : marks[1]]))
    return out


def _submit(release, answers: list[str], path) -> None:
    """The released notebook with its stubs replaced by ``answers``, in order."""
    nb = nbformat.read(release, 4)
    stubs = iter(answers)
    for cell in nb.cells:
        if cell.cell_type == "code" and STUB in cell.source:
            cell.source = cell.source.replace(STUB, next(stubs))
    assert next(stubs, None) is None, "more answers than stubs"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)


def test_generate_fill_autograde_scores(tmp_path, monkeypatch):
    from nbgrader.api import Gradebook

    # nbgrader runs the `alembic` command of its environment, found on PATH
    monkeypatch.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))

    source = nbformat.read(course.NOTEBOOKS / NAME, 4)
    marked = course.nbgrader_source(source)
    tests = [c for c in marked.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    assert [t.source for t in tests] == ["assert check_realised_rate(realised, ds)",
                                          "assert check_noisy_fit_at_val(noisy_at_val, history)"]
    root = tmp_path / "course"
    (root / "source" / "ps1").mkdir(parents=True)
    (root / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "samlab"\n')
    nbformat.write(marked, root / "source" / "ps1" / NAME)

    _nbgrader(root, "generate_assignment", "ps1", "--force")
    release = root / "release" / "ps1" / NAME
    released = nbformat.read(release, 4)
    text = nbformat.writes(released)
    assert "BEGIN SOLUTION" not in text and "at_epoch(history.val_epoch)" not in text
    # make student's copy has the same cell sources as nbgrader's release (the test cells aside)
    student = course.student_notebook(source)
    assert [c.source for c in student.cells] == [c.source for c in released.cells if c.id not in {t.id for t in tests}]

    right = _solutions(source)
    assert len(right) == 2
    _submit(release, right, root / "submitted" / "alice" / "ps1" / NAME)
    _submit(release, ["realised = 0.0", right[1]], root / "submitted" / "bob" / "ps1" / NAME)
    _nbgrader(root, "autograde", "ps1", "--create", "--force")

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        alice = gb.find_submission("ps1", "alice")
        bob = gb.find_submission("ps1", "bob")
        assert (alice.max_score, alice.score) == (2, 2)
        assert (bob.max_score, bob.score) == (2, 1)
        first, second = (t.metadata["nbgrader"]["grade_id"] for t in tests)
        assert gb.find_grade(first, NAME[:-6], "ps1", "bob").score == 0
        assert gb.find_grade(second, NAME[:-6], "ps1", "bob").score == 1
