"""Course tooling: student copies (nbgrader), nbgrader source notebooks, an offline HTML site.

The exercise cells of ``notebooks/NN_*.ipynb`` carry nbgrader's markup::

    def my_upweight(m, c):
        ### BEGIN SOLUTION
        return torch.sigmoid(-m + c) / torch.sigmoid(-m)
        ### END SOLUTION

A *student copy* is what nbgrader's own preprocessors make of a notebook (``ClearSolutions``,
``ClearHiddenTests`` and ``ClearOutput``, as ``nbgrader generate_assignment`` runs them, with
``enforce_metadata=False`` since the cells carry markup but no nbgrader cell metadata), less the
run's timestamps and saved widget state. :func:`nbgrader_source` turns a notebook into an
nbgrader *source* notebook (answer cells marked, an autograder test cell after each checked
exercise), for instructors who grade with ``nbgrader autograde``. The static site is
nbconvert's ``lab`` HTML that loads nothing from the network (MathJax copied in from the
jupyter-server-mathjax package; require.js, the widget renderer and mermaid left out), so it
reads offline; its links are checked by LinkChecker. From a shell::

    python -m samlab.course student          # write notebooks/exercises/NN_*.ipynb (make student)
    python -m samlab.course check            # exit 1 if the committed copies are stale
    python -m samlab.course nbgrader-source notebooks/01_*.ipynb --out source/ps1
    python -m samlab.course html --out _site # HTML of every notebook + index.html, links checked
    python -m samlab.course free-port 8888   # the first free local port from 8888 (make lab)

nbformat, nbconvert, nbgrader and linkchecker (the ``dev`` extra) are imported only when a
function needs them.
"""

from __future__ import annotations

import argparse
import copy
import html
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "EXERCISES",
    "NOTEBOOKS",
    "build_site",
    "check_links",
    "check_students",
    "colab_setup_cell",
    "free_port",
    "has_markup",
    "main",
    "nbgrader_source",
    "notebook_title",
    "source_notebooks",
    "student_notebook",
    "write_notebook",
    "write_students",
]

#: the instructor notebooks and where their student copies go
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXERCISES = NOTEBOOKS / "exercises"

_BEGIN = re.compile(r"^[ \t]*#+[ \t]*BEGIN (?:SOLUTION|HIDDEN TESTS)[ \t]*$", re.M)
_END_SOLUTION = re.compile(r"^[ \t]*#+[ \t]*END SOLUTION[ \t]*$")
_CHECK_CALL = re.compile(r"^(check_\w+\(.*\))[ \t]*$")
_SOURCE_NAME = re.compile(r"^\d\d_.*\.ipynb$")


def has_markup(nb: NotebookNode) -> bool:
    """Whether any cell of ``nb`` has a solution or hidden-tests region."""
    return any(_BEGIN.search(c.source) for c in nb.cells)


def student_notebook(nb: NotebookNode) -> NotebookNode:
    """A student copy of ``nb`` made by nbgrader's preprocessors (solutions stubbed, hidden tests
    removed, outputs cleared), without the run's timestamps and saved widget state."""
    try:
        from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions
    except ImportError as exc:  # the dev extra installs it on Python >= 3.11
        raise ImportError("student copies are made by nbgrader (Python 3.11+): pip install 'nbgrader>=0.9.5'") from exc

    out = copy.deepcopy(nb)
    resources: dict = {}
    for step in (ClearSolutions(enforce_metadata=False), ClearHiddenTests(enforce_metadata=False), ClearOutput()):
        out, resources = step.preprocess(out, resources)
    out.metadata.pop("widgets", None)  # saved widget state belongs to the instructor's run
    for cell in out.cells:
        cell.metadata.pop("execution", None)  # timestamps
    return out


def nbgrader_source(nb: NotebookNode, points: int = 1) -> NotebookNode:
    """``nb`` as an nbgrader *source* notebook: every code cell with a solution region becomes an
    "Autograded answer" cell, and each ``check_...(...)`` call at the end of such a cell gets an
    "Autograder tests" cell after it (``assert check_...(...)``, worth ``points``); markdown
    solution regions become "Manually graded answer" cells. ``nbgrader generate_assignment`` and
    ``nbgrader autograde`` then work on it with their default (enforcing) settings."""
    import nbformat

    out = copy.deepcopy(nb)
    cells = []
    for cell in out.cells:
        cells.append(cell)
        if not any(_END_SOLUTION.match(line) for line in cell.source.split("\n")):
            continue
        cid = cell.get("id") or f"cell{len(cells)}"
        if cell.cell_type == "markdown":
            cell.metadata["nbgrader"] = {
                "grade": True, "solution": True, "locked": False, "points": points, "grade_id": f"answer-{cid}",
                "schema_version": 3,
            }
            continue
        cell.metadata["nbgrader"] = {
            "grade": False, "solution": True, "locked": False, "grade_id": f"answer-{cid}", "schema_version": 3,
        }
        lines = cell.source.rstrip().split("\n")
        calls = [m.group(1) for m in map(_CHECK_CALL.match, lines[-1:]) if m is not None]
        for call in calls:
            test = nbformat.v4.new_code_cell(f"assert {call}", id=f"test-{cid}")
            test.metadata["nbgrader"] = {
                "grade": True, "solution": False, "locked": True, "points": points, "grade_id": f"test-{cid}",
                "schema_version": 3,
            }
            cells.append(test)
    out.cells = cells
    return out


def write_notebook(nb: NotebookNode, path: Path) -> bool:
    """Write ``nb`` to ``path`` in nbformat's stable JSON; ``True`` if the file changed."""
    text = _text(nb)
    path = Path(path)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def _text(nb: NotebookNode) -> str:
    import nbformat

    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


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
        texts[path.name] = _text(student)
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


def free_port(start: int = 8888, tries: int = 50, host: str = "127.0.0.1") -> int:
    """The first port from ``start`` (``tries`` of them) that nothing listens on at ``host``."""
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{start + tries - 1} on {host}")


# ---- static HTML site ------------------------------------------------------------------------

#: nbconvert's ``lab`` page without anything fetched from the network: MathJax from the site's own
#: copy (or none: formulas then stay as their TeX source), no require.js, no widget renderer (each
#: widget's static figure follows it), no mermaid. Styles are inlined from the installed packages.
_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- if resources.mathjax_url -%}{{ super() }}{%- endif -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
#: where the site keeps its copy of MathJax 2.7 (from the jupyter-server-mathjax package), and the
#: configuration its pages load
MATHJAX_DIR = Path("_static") / "mathjax"
_MATHJAX_CONFIG = "?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def _mathjax_source() -> Path | None:
    """MathJax 2.7's files as shipped by the jupyter-server-mathjax package (``None`` if not installed)."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return None
    static = Path(jupyter_server_mathjax.__file__).resolve().parent / "static"
    return static if (static / "MathJax.js").is_file() else None

_HREF = re.compile(r'(?P<attr>\b(?:href|src)=")(?P<target>[^"]*)"')


def _local(target: str) -> tuple[str, str] | None:
    """(path, fragment) of a relative link; ``None`` for external, data: and same-page links."""
    parts = urlsplit(target.strip())
    if parts.scheme or parts.netloc or not parts.path:
        return None
    return unquote(parts.path), unquote(parts.fragment)


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


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"samlab_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="samlab_offline.html.j2",
    )


def build_site(
    out: Path, notebooks: Sequence[Path] | None = None, repo: Path = NOTEBOOKS.parent, title: str = "samlab notebooks"
) -> list[Path]:
    """Write the HTML of each notebook (with its saved outputs; nothing is executed) to
    ``out/<path relative to repo>.html``, linked files of the repository beside it, and an
    ``out/index.html`` listing the notebook titles. Runs offline, and the pages load nothing
    from the network: MathJax is copied into ``out/_static/mathjax`` from the jupyter-server-mathjax
    package (without it, formulas show as TeX source). Returns the pages written."""
    repo, out = Path(repo).resolve(), Path(out).resolve()
    paths = [Path(p).resolve() for p in (source_notebooks() if notebooks is None else notebooks)]
    built = set(paths)
    exporter = _exporter()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    mathjax = _mathjax_source()
    if mathjax is not None:
        shutil.copytree(mathjax, out / MATHJAX_DIR)
    pages, entries = [], []
    for path in paths:
        nb = _read(path)
        nb.metadata.pop("widgets", None)  # no live widgets offline: the static figure after each one shows it
        page = out / (path.relative_to(repo) if path.is_relative_to(repo) else Path(path.name)).with_suffix(".html")
        page.parent.mkdir(parents=True, exist_ok=True)
        local_mathjax = Path(os.path.relpath(out / MATHJAX_DIR / "MathJax.js", page.parent)).as_posix()
        exporter.mathjax_url = local_mathjax + _MATHJAX_CONFIG if mathjax is not None else ""
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


def check_links(site: Path) -> list[str]:
    """Broken links of the HTML pages under ``site``, found by LinkChecker (missing files, missing
    ``#anchors``, same page included, absolute paths, links that leave the site). Links that are
    not ``file:`` URLs (``http(s)://``, ``mailto:``, ``data:``) are not checked: the check runs offline.

    LinkChecker runs in this process on a copy of ``site`` inside an otherwise empty folder, so a
    relative link that climbs out of the site finds nothing there and is reported.
    """
    from linkcheck import configuration, director, get_link_pat
    from linkcheck.checker import get_url_from
    from linkcheck.logger import _Logger  # the base of LinkChecker's loggers; this one collects

    broken: list[str] = []

    class Collect(_Logger):
        LoggerName = "samlab-collect"
        LoggerArgs: dict = {}

        def __init__(self, **kwargs):
            super().__init__(**{**kwargs, "parts": ["all"]})

        def start_output(self):
            pass

        def comment(self, s, **args):
            pass

        def end_output(self, **kwargs):
            pass

        def log_url(self, url_data):
            if url_data.valid:
                for _, message in url_data.warnings:  # AnchorCheck's warning has no tag
                    if not message.startswith("Anchor "):
                        continue
                    # AnchorCheck compares the decoded fragment with the raw ids; nbconvert writes
                    # percent-encoded ids (``98-%E2%80%94-Other``), which browsers match: compare decoded
                    listed = message.partition("Available anchors: `")[2].removesuffix("'.")
                    if unquote(urlsplit(url_data.url).fragment) not in {unquote(a) for a in listed.split("', `")}:
                        broken.append(f"{where(url_data)}: {url_data.base_url!r} {message.split(' Available')[0]}")
                return
            result = "does not exist" if "No such file" in str(url_data.result) else url_data.result
            broken.append(f"{where(url_data)}: {url_data.base_url!r} {result}")

    with tempfile.TemporaryDirectory(prefix="samlab-links-") as tmp:
        copy_root = Path(tmp) / "site"
        shutil.copytree(site, copy_root)

        def where(url_data) -> str:
            parent = unquote(urlsplit(url_data.parent_url or "").path)
            return Path(parent).relative_to(copy_root).as_posix() if parent.startswith(str(copy_root)) else parent

        config = configuration.Configuration()
        config.logger_add(Collect)
        config["logger"] = config.logger_new(Collect.LoggerName)
        config["fileoutput"] = []
        config["status"] = False
        config["threads"] = 0  # in this thread
        config["recursionlevel"] = 1  # every page is queued: check its links, do not parse them again
        config["checkextern"] = False
        config["enabledplugins"] = ["AnchorCheck"]
        config["externlinks"].append(get_link_pat(r"^(?!file:)", strict=True))  # not fetched at all
        config["internlinks"].append(get_link_pat(r"^file:"))  # checked, also outside the site
        config.sanitize()
        aggregate = director.get_aggregate(config)
        pages = sorted(copy_root.rglob("*.html"))
        for page in pages:
            aggregate.urlqueue.put(get_url_from(page.as_uri(), 0, aggregate, extern=(0, 0)))
        director.check_urls(aggregate)
        if config["logger"].stats.internal_errors:
            raise RuntimeError(f"LinkChecker failed on {site} (internal error; its report is above)")
    return sorted(set(broken))


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
    p_source = sub.add_parser("nbgrader-source", help="write nbgrader source notebooks (answer and test cells marked)")
    p_source.add_argument("notebooks", nargs="+", type=Path)
    p_source.add_argument("--out", type=Path, required=True, help="e.g. COURSE/source/ASSIGNMENT")
    p_html = sub.add_parser("html", help="static HTML of every notebook plus index.html; exit 1 on broken links")
    p_html.add_argument("--out", type=Path, default=Path("_site"), help="output folder (default: %(default)s)")
    p_html.add_argument("notebooks", nargs="*", type=Path, help="notebooks to build (default: notebooks/NN_*.ipynb)")
    p_port = sub.add_parser("free-port", help="print the first free local port from START (exit 1 if none)")
    p_port.add_argument("start", type=int, nargs="?", default=8888)
    p_port.add_argument("--tries", type=int, default=50)
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
    if args.command == "nbgrader-source":
        for path in args.notebooks:
            write_notebook(nbgrader_source(_read(path)), args.out / path.name)
            print(args.out / path.name)
        return 0
    if args.command == "free-port":
        try:
            print(free_port(args.start, args.tries))
        except RuntimeError as exc:
            print(f"{exc}: stop another Jupyter server, or pass a port: jupyter lab --port=N", file=sys.stderr)
            return 1
        return 0
    pages = build_site(args.out, args.notebooks or None)
    broken = check_links(args.out)
    for problem in broken:
        print(f"broken link: {problem}", file=sys.stderr)
    print(f"{len(pages)} pages in {args.out}" + (f", {len(broken)} broken links" if broken else ""))
    return 1 if broken else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
