"""Course tooling: student copies of the notebooks and a static HTML version of them.

The exercise cells of ``notebooks/NN_*.ipynb`` carry nbgrader's markup::

    def my_upweight(m, c):
        ### BEGIN SOLUTION
        return torch.sigmoid(-m + c) / torch.sigmoid(-m)
        ### END SOLUTION

A *student copy* replaces each solution region by nbgrader's stub (``# YOUR CODE HERE`` /
``raise NotImplementedError()`` in code, ``YOUR ANSWER HERE`` in markdown, indented like the
marker), drops ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` regions and clears
every output, so the result matches ``nbgrader generate_assignment`` without needing
nbgrader. From a shell (``make student``, ``make html``)::

    python -m samlab.course student          # write notebooks/exercises/NN_*.ipynb
    python -m samlab.course check            # exit 1 if the committed copies are stale
    python -m samlab.course html --out _site # HTML of every notebook + index.html, links checked

nbformat and nbconvert (the ``dev`` extra) are imported only when a function needs them.
"""

from __future__ import annotations

import argparse
import copy
import html
import re
import shutil
import sys
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "CODE_STUB",
    "EXERCISES",
    "NOTEBOOKS",
    "TEXT_STUB",
    "build_site",
    "check_links",
    "check_students",
    "clear_hidden_tests",
    "clear_solutions",
    "colab_setup_cell",
    "has_markup",
    "main",
    "notebook_title",
    "source_notebooks",
    "student_notebook",
    "write_notebook",
    "write_students",
]

#: nbgrader's stubs for Python code and for written answers.
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"
#: the instructor notebooks and where their student copies go
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXERCISES = NOTEBOOKS / "exercises"

_MARKER = r"^(?P<indent>[ \t]*)#+[ \t]*{}[ \t]*$"
_BEGIN_SOLUTION = re.compile(_MARKER.format("BEGIN SOLUTION"))
_END_SOLUTION = re.compile(_MARKER.format("END SOLUTION"))
_BEGIN_HIDDEN = re.compile(_MARKER.format("BEGIN HIDDEN TESTS"))
_END_HIDDEN = re.compile(_MARKER.format("END HIDDEN TESTS"))
_SOURCE_NAME = re.compile(r"^\d\d_.*\.ipynb$")


def _replace_regions(source: str, begin: re.Pattern[str], end: re.Pattern[str], stub: str | None) -> tuple[str, bool]:
    """``source`` with every begin...end region (markers included) replaced by ``stub``, indented
    like its begin marker (or dropped when ``stub`` is None); and whether there was a region."""
    out: list[str] = []
    inside = found = False
    for line in source.split("\n"):
        if (m := begin.match(line)) is not None:
            if inside:
                raise ValueError(f"nested {begin.pattern!r} in cell:\n{source}")
            inside = found = True
            if stub is not None:
                out.extend(m.group("indent") + s for s in stub.split("\n"))
        elif end.match(line) is not None:
            if not inside:
                raise ValueError(f"{end.pattern!r} without its begin marker in cell:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{begin.pattern!r} without its end marker in cell:\n{source}")
    return "\n".join(out), found


def clear_solutions(source: str, cell_type: str = "code") -> str:
    """Replace each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region by nbgrader's stub."""
    return _replace_regions(source, _BEGIN_SOLUTION, _END_SOLUTION, CODE_STUB if cell_type == "code" else TEXT_STUB)[0]


def clear_hidden_tests(source: str) -> str:
    """Remove each ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` region, markers included."""
    return _replace_regions(source, _BEGIN_HIDDEN, _END_HIDDEN, None)[0]


def has_markup(nb: NotebookNode) -> bool:
    """Whether any cell of ``nb`` has a solution or hidden-tests region."""
    return any(
        p.match(line) for c in nb.cells for line in c.source.split("\n") for p in (_BEGIN_SOLUTION, _BEGIN_HIDDEN)
    )


def student_notebook(nb: NotebookNode) -> NotebookNode:
    """A student copy of ``nb``: solutions stubbed, hidden tests removed, outputs and run metadata cleared."""
    out = copy.deepcopy(nb)
    out.metadata.pop("widgets", None)  # saved widget state belongs to the instructor's run
    for cell in out.cells:
        if cell.cell_type not in ("code", "markdown"):
            continue
        cell.source = clear_solutions(clear_hidden_tests(cell.source), cell.cell_type)
        cell.metadata.pop("execution", None)  # timestamps
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return out


def write_notebook(nb: NotebookNode, path: Path) -> bool:
    """Write ``nb`` to ``path`` in nbformat's stable JSON; ``True`` if the file changed."""
    import nbformat

    text = nbformat.writes(nb, version=4)
    text = text if text.endswith("\n") else text + "\n"
    path = Path(path)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def _read(path: Path) -> NotebookNode:
    import nbformat

    return nbformat.read(path, as_version=4)


def source_notebooks(src: Path = NOTEBOOKS) -> list[Path]:
    """The instructor notebooks ``src/NN_*.ipynb``, in order."""
    return sorted(p for p in Path(src).iterdir() if p.is_file() and _SOURCE_NAME.match(p.name))


def _expected(src: Path, colab_url: str | None = None) -> dict[str, str]:
    """File name -> exact text of every student copy that ``src`` calls for."""
    import nbformat

    texts: dict[str, str] = {}
    for path in source_notebooks(src):
        nb = _read(path)
        if not has_markup(nb):
            continue
        student = student_notebook(nb)
        if colab_url is not None:
            student.cells.insert(0, nbformat.v4.new_code_cell(colab_setup_cell(colab_url), id="colab-setup"))
        text = nbformat.writes(student, version=4)
        texts[path.name] = text if text.endswith("\n") else text + "\n"
    return texts


def write_students(src: Path = NOTEBOOKS, out: Path = EXERCISES, colab_url: str | None = None) -> list[Path]:
    """Write a student copy of every notebook of ``src`` with solution markup into ``out``, and remove
    stale copies there (``NN_*.ipynb`` whose source is gone or has no markup). Returns the copies."""
    out = Path(out)
    expected = _expected(src, colab_url)
    if out.is_dir():
        for stale in source_notebooks(out):
            if stale.name not in expected:
                stale.unlink()
    written = []
    for name, text in expected.items():
        path = out / name
        if not (path.is_file() and path.read_text(encoding="utf-8") == text):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check_students(src: Path = NOTEBOOKS, out: Path = EXERCISES) -> list[str]:
    """What differs between the student copies in ``out`` and fresh ones from ``src`` (empty: in sync)."""
    out = Path(out)
    expected = _expected(src)
    problems = [f"{out / n}: missing" for n in expected if not (out / n).is_file()]
    problems += [
        f"{out / n}: differs from a fresh copy of {Path(src) / n}"
        for n, text in expected.items()
        if (out / n).is_file() and (out / n).read_text(encoding="utf-8") != text
    ]
    if out.is_dir():
        problems += [f"{p}: stale (no marked-up source)" for p in source_notebooks(out) if p.name not in expected]
    return problems


def colab_setup_cell(repo_url: str = "https://github.com/OWNER/samlab") -> str:
    """A first code cell that, on Google Colab only, clones ``repo_url`` and installs samlab from it.

    The clone (not a bare ``pip install git+...``) keeps ``data/results/`` next to the package, where
    notebooks 03+ find the committed results. Elsewhere the cell does nothing.
    """
    return (
        "# Google Colab only: fetch the course repository and install samlab (elsewhere this does nothing).\n"
        "import os, subprocess, sys\n"
        f'REPO_URL = "{repo_url}"  # set by the instructor\n'
        'if "google.colab" in sys.modules:\n'
        '    if not os.path.isdir("/content/samlab"):\n'
        '        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "/content/samlab"], check=True)\n'
        '        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", "/content/samlab"], check=True)\n'
        '    sys.path.insert(0, "/content/samlab")'
    )


def notebook_title(nb: NotebookNode, default: str = "") -> str:
    """The text of the first ``# heading`` of ``nb``'s markdown cells (``default`` if none)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.split("\n"):
                if line.startswith("# "):
                    return line[2:].strip()
    return default


# ---- static HTML site ------------------------------------------------------------------------


class _Links(HTMLParser):
    """Collects the link targets (``href``/``src``) and the anchors (``id``/``name``) of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.targets: list[str] = []
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value is None:
                continue
            if key in ("href", "src"):
                self.targets.append(value)
            elif key == "id" or (key == "name" and tag == "a"):
                self.anchors.add(value)


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _local(target: str) -> tuple[str, str] | None:
    """(path, fragment) of a relative link; ``None`` for external, data: and same-page links."""
    parts = urlsplit(target.strip())
    if parts.scheme or parts.netloc or not parts.path:
        return None
    return unquote(parts.path), unquote(parts.fragment)


def check_links(site: Path) -> list[str]:
    """Broken relative links of the HTML pages under ``site``: targets that are missing, that leave
    ``site``, or (between pages) whose ``#fragment`` names no anchor of the target page."""
    site = Path(site).resolve()
    pages = {p: _parse(p) for p in sorted(site.rglob("*.html"))}
    broken = []
    for page, links in pages.items():
        for target in links.targets:
            local = _local(target)
            if local is None:
                continue
            path, fragment = local
            name = page.relative_to(site)
            if path.startswith("/"):
                broken.append(f"{name}: {target!r} is an absolute path (use a relative link)")
                continue
            dest = (page.parent / path).resolve()
            if not dest.is_relative_to(site):
                broken.append(f"{name}: {target!r} points outside the site")
            elif not dest.is_file():
                broken.append(f"{name}: {target!r} does not exist")
            elif fragment and dest in pages and fragment not in pages[dest].anchors:
                broken.append(f"{name}: {target!r} has no anchor #{fragment}")
    return broken


_HREF = re.compile(r'(?P<attr>\b(?:href|src)=")(?P<target>[^"]*)"')


def _relink(page_html: str, built: set[Path], src_dir: Path, repo: Path, site: Path, page_dir: Path) -> str:
    """Point links to built notebooks at their HTML page; copy linked local files of the repository
    into the site at the same relative place. Other links are left as they are (and checked later)."""

    def fix(m: re.Match[str]) -> str:
        target = html.unescape(m.group("target"))
        local = _local(target)
        if local is None:
            return m.group(0)
        path, _ = local
        parts = urlsplit(target)
        if path.endswith(".ipynb") and (src_dir / path).resolve() in built:
            new = parts._replace(path=parts.path[: -len(".ipynb")] + ".html").geturl()
            return f'{m.group("attr")}{html.escape(new)}"'
        source = (src_dir / path).resolve()
        dest = (page_dir / path).resolve()
        if source.is_file() and source.is_relative_to(repo) and dest.is_relative_to(site) and not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
        return m.group(0)

    return _HREF.sub(fix, page_html)


def build_site(
    out: Path, notebooks: Sequence[Path] | None = None, repo: Path = NOTEBOOKS.parent, title: str = "samlab notebooks"
) -> list[Path]:
    """Write the HTML of each notebook (with its saved outputs; nothing is executed) to
    ``out/<path relative to repo>.html``, linked files of the repository beside it, and an
    ``out/index.html`` listing the notebook titles. Runs offline. Returns the pages written."""
    from nbconvert import HTMLExporter

    repo, out = Path(repo).resolve(), Path(out).resolve()
    paths = [Path(p).resolve() for p in (source_notebooks() if notebooks is None else notebooks)]
    built = set(paths)
    exporter = HTMLExporter(template_name="lab")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pages, entries = [], []
    for path in paths:
        nb = _read(path)
        page = out / (path.relative_to(repo) if path.is_relative_to(repo) else Path(path.name)).with_suffix(".html")
        page.parent.mkdir(parents=True, exist_ok=True)
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook_title(nb, path.stem)}})
        page.write_text(_relink(body, built, path.parent, repo, out, page.parent), encoding="utf-8")
        pages.append(page)
        entries.append((page.relative_to(out).as_posix(), notebook_title(nb, path.stem)))
    items = "\n".join(f'<li><a href="{html.escape(href)}">{html.escape(name)}</a></li>' for href, name in entries)
    index = out / "index.html"
    index.write_text(
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
        f"<ul>\n{items}\n</ul>\n</body>\n</html>\n",
        encoding="utf-8",
    )
    return [index, *pages]


# ---- command line ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samlab.course", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_student = sub.add_parser("student", help="write the student copies of the notebooks with exercises")
    p_student.add_argument("--src", type=Path, default=NOTEBOOKS, help="instructor notebooks (default: %(default)s)")
    p_student.add_argument("--out", type=Path, default=EXERCISES, help="where the copies go (default: %(default)s)")
    p_student.add_argument("--colab-url", default=None, help="prepend a Colab set-up cell cloning this repository")
    p_check = sub.add_parser("check", help="exit 1 if the student copies differ from freshly generated ones")
    p_check.add_argument("--src", type=Path, default=NOTEBOOKS)
    p_check.add_argument("--out", type=Path, default=EXERCISES)
    p_html = sub.add_parser("html", help="static HTML of every notebook plus index.html; exit 1 on broken links")
    p_html.add_argument("--out", type=Path, default=Path("_site"), help="output folder (default: %(default)s)")
    p_html.add_argument("notebooks", nargs="*", type=Path, help="notebooks to build (default: notebooks/NN_*.ipynb)")
    args = parser.parse_args(argv)
    if args.command == "student":
        for path in write_students(args.src, args.out, args.colab_url):
            print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
        return 0
    if args.command == "check":
        problems = check_students(args.src, args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run `make student` (python -m samlab.course student) and commit the result", file=sys.stderr)
        return 1 if problems else 0
    pages = build_site(args.out, args.notebooks or None)
    broken = check_links(args.out)
    for problem in broken:
        print(f"broken link: {problem}", file=sys.stderr)
    print(f"{len(pages)} pages in {args.out}" + (f", {len(broken)} broken links" if broken else ""))
    return 1 if broken else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
