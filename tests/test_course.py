"""Course tooling: student copies (nbgrader's preprocessors), their sync with the sources, that they
run up to the first exercise, and the offline static HTML site with its link check (LinkChecker).
The instructor route through ``nbgrader autograde`` is in tests/test_nbgrader.py."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import sys

import pytest

nbformat = pytest.importorskip("nbformat")

from samlab import course  # noqa: E402  (after the importorskip)

#: the student copy run in the default test run (the smallest); the others are marked slow
REPRESENTATIVE = "00_label_noise_memorisation.ipynb"


def _toy_notebook():
    v4 = nbformat.v4
    nb = v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "widgets": {"state": {}},
        }
    )
    nb.cells = [
        v4.new_markdown_cell("# 99 — A toy notebook\n\nSome text.", id="title"),
        v4.new_code_cell(
            "x = 1\nprint(x)",
            id="plain",
            execution_count=3,
            outputs=[v4.new_output("stream", name="stdout", text="1\n")],
            metadata={"execution": {"iopub.status.idle": "2026-01-01T00:00:00Z"}, "tags": ["keep"]},
        ),
        v4.new_code_cell(
            "def f(a):\n    ### BEGIN SOLUTION\n    b = a + 1\n    return b\n    ### END SOLUTION\n\ncheck(f)",
            id="exercise",
            execution_count=4,
            outputs=[v4.new_output("stream", name="stdout", text="✓ Right\n")],
        ),
        v4.new_code_cell(
            "### BEGIN SOLUTION\ny = 2\n### END SOLUTION\nassert y == 2\n"
            "### BEGIN HIDDEN TESTS\nassert y != 3\n### END HIDDEN TESTS",
            id="hidden",
        ),
        v4.new_markdown_cell("**Why?**\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION", id="written"),
    ]
    return nb


def test_student_notebook_stubs_solutions_and_clears_outputs():
    nb = _toy_notebook()
    before = nbformat.writes(nb)
    student = course.student_notebook(nb)
    assert nbformat.writes(nb) == before  # the source is not modified
    cells = {c.id: c for c in student.cells}
    assert cells["title"].source == nb.cells[0].source
    assert cells["plain"].source == "x = 1\nprint(x)"
    assert cells["exercise"].source == ("def f(a):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\ncheck(f)")
    assert cells["hidden"].source == "# YOUR CODE HERE\nraise NotImplementedError()\nassert y == 2"
    assert cells["written"].source == "**Why?**\n\nYOUR ANSWER HERE"
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert "execution" not in cell.metadata
    assert cells["plain"].metadata["tags"] == ["keep"]
    assert "widgets" not in student.metadata
    assert student.metadata["kernelspec"]["name"] == "python3"
    nbformat.validate(student)
    assert course.has_markup(nb) and not course.has_markup(student)


def _one_cell(source):
    return nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source, id="a")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


def test_unbalanced_markers_are_refused():
    """nbgrader's ClearSolutions refuses a region without its end, and nested regions."""
    with pytest.raises(RuntimeError, match="no end solution"):
        course.student_notebook(_one_cell("### BEGIN SOLUTION\nx = 1"))
    with pytest.raises(RuntimeError, match="nested"):
        course.student_notebook(_one_cell("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION"))


def test_write_students_is_deterministic_and_idempotent(tmp_path):
    src, out = tmp_path / "notebooks", tmp_path / "notebooks" / "exercises"
    src.mkdir()
    nbformat.write(_toy_notebook(), src / "99_toy.ipynb")
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", id="a")])
    nbformat.write(plain, src / "98_no_markup.ipynb")
    (src / "notes.ipynb").write_text("not a course notebook")  # not NN_*.ipynb: ignored
    assert course.check_students(src, out) == [f"{out / '99_toy.ipynb'}: missing"]

    written = course.write_students(src, out)
    assert [p.name for p in written] == ["99_toy.ipynb"]  # no copy for a notebook without markup
    first = (out / "99_toy.ipynb").read_bytes()
    assert json.loads(first)["cells"][2]["outputs"] == []
    assert first.endswith(b"\n")
    assert course.check_students(src, out) == []
    course.write_students(src, out)
    assert (out / "99_toy.ipynb").read_bytes() == first  # byte-identical
    again = nbformat.reads(first.decode(), 4)
    assert course.student_notebook(again) == nbformat.reads(first.decode(), 4)

    (out / "99_toy.ipynb").write_text(first.decode().replace("YOUR CODE HERE", "a hint"))
    (out / "97_gone.ipynb").write_bytes(first)
    problems = course.check_students(src, out)
    assert len(problems) == 2 and "differs" in problems[0] and "stale" in problems[1]
    assert course.main(["check", "--src", str(src), "--out", str(out)]) == 1
    assert course.main(["student", "--src", str(src), "--out", str(out)]) == 0
    assert not (out / "97_gone.ipynb").exists()
    assert (out / "99_toy.ipynb").read_bytes() == first
    assert course.main(["check", "--src", str(src), "--out", str(out)]) == 0


def test_colab_cell_compiles_and_does_nothing_outside_colab(tmp_path):
    source = course.colab_setup_cell("https://example.org/me/samlab")
    assert "https://example.org/me/samlab" in source and "google.colab" in source
    compile(source, "<colab>", "exec")
    assert "google.colab" not in sys.modules
    exec(source, {})  # outside Colab: no clone, no install
    out = tmp_path / "ex"
    course.write_students(course.NOTEBOOKS, out, colab_url="https://example.org/me/samlab")
    for path in out.glob("*.ipynb"):
        assert nbformat.read(path, 4).cells[0].source == source


def test_committed_student_copies_are_in_sync():
    """``make student`` was run after the last change to a notebook's exercises (and committed)."""
    marked = [p for p in course.source_notebooks() if course.has_markup(nbformat.read(p, 4))]
    if not marked:
        pytest.skip("no notebook has solution markup")
    assert course.check_students() == [], "run `make student` and commit notebooks/exercises/"


def _student_copies() -> list:
    names = [p.name for p in course.source_notebooks(course.EXERCISES)] if course.EXERCISES.is_dir() else []
    return [pytest.param(n, id=n[:2], marks=() if n == REPRESENTATIVE else pytest.mark.slow) for n in names]


@contextlib.contextmanager
def _current_env_kernel():
    """A kernel manager for this interpreter's environment (as nbval's ``--nbval-current-env``);
    whatever kernel it started is shut down on leaving (nbclient leaves a kernel it was given running)."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    class CurrentEnv(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

    km = KernelManager(kernel_spec_manager=CurrentEnv(), kernel_name="python3")
    try:
        yield km
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        assert not km.is_alive(), "the notebook's kernel outlived its test"


def _is_stub(source: str) -> bool:
    """Whether a cell holds the code stub (at any indentation)."""
    lines = [ln.strip() for ln in source.split("\n")]
    return any(a == "# YOUR CODE HERE" and b == "raise NotImplementedError()" for a, b in itertools.pairwise(lines))


@pytest.mark.parametrize("name", _student_copies())
def test_student_copy_runs_up_to_its_first_exercise(name, monkeypatch):
    """Executed in order at the smoke size, a student copy fails first at an exercise stub, with
    NotImplementedError (or, where a check catches the stub's error, says so in its output)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("SAMLAB_PROFILE", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = course.EXERCISES / name
    nb = nbformat.read(path, 4)
    stubs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and _is_stub(c.source)]
    assert stubs, f"{name} has no exercise stub"
    error = None
    with _current_env_kernel() as km:
        client = NotebookClient(nb, timeout=600, km=km, resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
        except CellExecutionError as exc:
            error = exc
    failed = [i for i, c in enumerate(nb.cells) if any(o.output_type == "error" for o in c.get("outputs", []))]
    if error is not None:
        assert error.ename == "NotImplementedError", f"{name}: first error is not at a stub:\n{error}"
        assert failed and failed[0] in stubs, f"{name}: cell {failed} raised, stubs are cells {stubs}"
    reached = [i for i in stubs if not failed or i < failed[0]]
    for i in reached:  # stubs that ran without raising: their check reported the NotImplementedError
        text = "".join(o.get("text", "") for o in nb.cells[i].outputs if o.output_type == "stream")
        assert "NotImplementedError" in text, f"{name}, cell {i}: the stub ran without a sign of it:\n{text}"


def test_site_builds_offline_for_one_notebook(tmp_path, offline):
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "README.md").write_text("# readme\n")
    nb = _toy_notebook()
    nb.cells.append(
        nbformat.v4.new_markdown_cell(
            "See [the other](98_other.ipynb#Part-two), [the readme](../README.md) and [the web](https://example.org).",
            id="links",
        )
    )
    nbformat.write(nb, repo / "notebooks" / "99_toy.ipynb")
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 98 — Other\n\n## Part two", id="m")])
    nbformat.write(other, repo / "notebooks" / "98_other.ipynb")

    site = tmp_path / "_site"
    pages = course.build_site(
        site, [repo / "notebooks" / "99_toy.ipynb", repo / "notebooks" / "98_other.ipynb"], repo=repo
    )
    assert [p.relative_to(site).as_posix() for p in pages] == [
        "index.html",
        "notebooks/99_toy.html",
        "notebooks/98_other.html",
    ]
    index = (site / "index.html").read_text()
    assert '<a href="notebooks/99_toy.html">99 — A toy notebook</a>' in index
    assert "98 — Other" in index
    toy = (site / "notebooks" / "99_toy.html").read_text()
    assert "Some text." in toy and "✓ Right" in toy  # saved outputs are kept
    assert 'href="98_other.html#Part-two"' in toy  # notebook links point at the HTML page
    assert (site / "README.md").is_file()  # linked local files are copied beside
    assert course.check_links(site) == []
    assert offline == []  # nothing was fetched


def test_link_checker_catches_broken_links(tmp_path):
    site = tmp_path / "_site"
    (site / "sub").mkdir(parents=True)
    (site / "ok.html").write_text('<h2 id="here">x</h2><a href="sub/b.html#there">fine</a>')
    (site / "sub" / "b.html").write_text(
        '<p id="there"></p>'
        '<a href="../ok.html#here">fine</a> <a href="#there">same page</a> <a href="#anything">no anchor</a> '
        '<a href="https://example.org/x.html">web</a> <img src="data:image/png;base64,AAAA"> '
        '<a href="missing.html">gone</a> <img src="fig.png"> <a href="../ok.html#nowhere">bad anchor</a> '
        '<a href="../../outside.html">out</a> <a href="/abs.html">abs</a> <a href="01_x.ipynb">nb</a>'
    )
    (tmp_path / "outside.html").write_text("")
    broken = course.check_links(site)
    assert len(broken) == 7, broken
    for bad in ("missing.html", "fig.png", "#nowhere", "#anything", "outside.html", "/abs.html", "01_x.ipynb"):
        assert any(bad in b for b in broken), (bad, broken)


def test_make_html_fails_on_a_link_to_a_missing_file(tmp_path, capsys):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 97\n\n[data](../no/such/file.json)", id="m")])
    nbformat.write(nb, tmp_path / "97_broken.ipynb")
    assert course.main(["html", "--out", str(tmp_path / "site"), str(tmp_path / "97_broken.ipynb")]) == 1
    assert "no/such/file.json" in capsys.readouterr().err


def test_instructor_guide_links_exist():
    guide = course.NOTEBOOKS / "README.md"
    targets = re.findall(r"\]\(([^)#\s]+)[^)]*\)", guide.read_text())
    local = [t for t in targets if "://" not in t]
    assert "00_label_noise_memorisation.ipynb" in local
    missing = [t for t in local if not (guide.parent / t).exists()]
    assert not missing, f"notebooks/README.md links to missing files {missing}"


def test_the_real_site_builds_offline_with_no_broken_links(tmp_path, offline):
    """`make html` on the committed notebooks: every page built, every relative link resolves."""
    site = tmp_path / "_site"
    pages = course.build_site(site)
    assert len(pages) == len(course.source_notebooks()) + 1  # the notebooks and the index
    assert course.check_links(site) == []
    for page in pages:  # offline-safe: no script, style sheet or font is fetched from the network
        text = page.read_text(encoding="utf-8")
        remote = re.findall(r"<(?:script|link)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//[^>]*>", text)
        assert remote == [], f"{page.name} loads {remote[:3]}"
        assert "@import url(http" not in text
    if course._mathjax_source() is not None:  # formulas typeset by the site's own MathJax
        assert (site / course.MATHJAX_DIR / "MathJax.js").is_file()
        assert 'src="../_static/mathjax/MathJax.js?config=' in pages[1].read_text(encoding="utf-8")


def test_free_port_skips_a_port_in_use():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        found = course.free_port(port, tries=20)
        assert port < found < port + 20
        with pytest.raises(RuntimeError, match="no free port"):
            course.free_port(port, tries=1)
