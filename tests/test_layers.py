"""The README's module table is the import order: a module never imports one listed below it, the import
graph has no cycle (within a row either), and each row's last column names what the row imports. Checked
on the source: every ``import`` statement of every file, those inside functions included. A package's
``__main__.py`` is exempt: it is an entry point (``python -m``) that nothing imports."""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| module | one concept | imports from samlab |"


def _table(text: str) -> list[tuple[list[str], str]]:
    """The table's rows: (the modules a row names, its last column)."""
    lines = text[text.index(HEADER):].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append((re.findall(r"`(samlab\.\w+)`", cells[0]), cells[-1]))
    return rows


def _rows(text: str) -> dict[str, int]:
    """Module -> its row (modules named in one row share it); a module named twice is an error."""
    out: dict[str, int] = {}
    for i, (names, _) in enumerate(_table(text)):
        for name in names:
            assert name not in out, f"{name} is listed in two rows"
            out[name] = i
    return out


def _unit(name: str) -> str:
    """``samlab.methods.sam`` -> ``samlab.methods``: a package counts as one module of the table."""
    return ".".join(name.split(".")[:2])


def _imports(file: Path) -> set[str]:
    """The samlab modules ``file`` imports (``from samlab import x`` names ``samlab.x``); a relative import
    is an error."""
    out = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            out |= {_unit(a.name) for a in node.names if a.name.startswith("samlab.")}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{file}:{node.lineno}: a relative import (samlab imports absolutely)"
            if node.module == "samlab":
                out |= {f"samlab.{a.name}" for a in node.names if a.name != "__version__"}
            elif node.module and node.module.startswith("samlab."):
                out.add(_unit(node.module))
    return out


def _graph() -> dict[str, set[str]]:
    """Module (a table row's name) -> the samlab modules its files import, itself excluded."""
    graph: dict[str, set[str]] = {}
    for file in sorted((ROOT / "samlab").rglob("*.py")):
        parts = file.relative_to(ROOT / "samlab").with_suffix("").parts
        if parts == ("__init__",) or parts[-1] == "__main__":
            continue
        unit = f"samlab.{parts[0]}"
        graph.setdefault(unit, set()).update(_imports(file) - {unit})
    return graph


def _upward(rows: dict[str, int], graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module listed below the importer, or of one the table does not list."""
    return [f"{unit} imports {name}" for unit, names in graph.items() for name in sorted(names)
            if name not in rows or rows[name] > rows[unit]]


README = (ROOT / "README.md").read_text()


def test_the_table_lists_every_module():
    rows, graph = _rows(README), _graph()
    assert len(rows) > 20
    assert set(graph) == set(rows), set(graph) ^ set(rows)


def test_no_module_imports_one_listed_below_it_and_there_is_no_cycle():
    graph = _graph()
    assert not _upward(_rows(README), graph), _upward(_rows(README), graph)
    graphlib.TopologicalSorter(graph).prepare()   # raises CycleError on a cycle, within a row too


def test_each_row_names_what_it_imports():
    graph = _graph()
    for names, column in _table(README):
        actual = {n.split(".")[1] for name in names for n in graph[name]} - {n.split(".")[1] for n in names}
        if column == "the layers above":
            continue
        listed = set() if column == "—" else {w.strip() for w in column.split(",")} - {"…"}
        if "…" in column:   # abbreviated: what it names, it imports
            assert listed <= actual, (names, listed - actual)
        else:
            assert listed == actual, (names, "listed, not imported:", listed - actual,
                                      "imported, not listed:", actual - listed)


def test_the_checks_see_what_they_must(tmp_path):
    file = tmp_path / "m.py"
    file.write_text("import torch\nfrom samlab import data, stats as s, __version__\ndef f():\n"
                    "    from samlab.cluster.x import y\n    import samlab.methods.sam\n")
    assert _imports(file) == {"samlab.data", "samlab.stats", "samlab.cluster", "samlab.methods"}
    file.write_text("from . import data\n")
    with pytest.raises(AssertionError, match="relative import"):
        _imports(file)
    table = f"{HEADER}\n|---|---|---|\n| `samlab.a`, `samlab.b` | x | — |\n| `samlab.c` | y | a |\n\ntext"
    rows = _rows(table)
    assert rows == {"samlab.a": 0, "samlab.b": 0, "samlab.c": 1}
    assert _upward(rows, {"samlab.a": {"samlab.c"}, "samlab.c": {"samlab.a"}}) == ["samlab.a imports samlab.c"]
    assert _upward(rows, {"samlab.c": {"samlab.zzz"}}) == ["samlab.c imports samlab.zzz"]
    assert _upward(rows, {"samlab.a": {"samlab.b"}, "samlab.c": {"samlab.a"}}) == []
    with pytest.raises(graphlib.CycleError):   # two modules of one row importing each other
        graphlib.TopologicalSorter({"samlab.a": {"samlab.b"}, "samlab.b": {"samlab.a"}}).prepare()
    with pytest.raises(AssertionError, match="two rows"):
        _rows(table.replace("| `samlab.c` |", "| `samlab.a` |"))
