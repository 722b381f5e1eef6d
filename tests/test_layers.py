"""The README's module table is the import order: a module never imports one listed below it, so there is
no import cycle. Checked on the source: every ``import`` statement of every file, those inside functions
included. A package's ``__main__.py`` is exempt: it is an entry point (``python -m``) that nothing imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| module | one concept | imports from samlab |"


def _rows() -> dict[str, int]:
    """Module -> its row in the README's table (modules named in one row share it)."""
    text = (ROOT / "README.md").read_text()
    lines = text[text.index(HEADER):].splitlines()[2:]
    rows: dict[str, int] = {}
    for i, line in enumerate(lines[: next(k for k, x in enumerate(lines) if not x.startswith("|"))]):
        for name in re.findall(r"`(samlab\.\w+)`", line.split("|")[1]):
            rows[name] = i
    return rows


def _unit(name: str) -> str:
    """``samlab.methods.sam`` -> ``samlab.methods``: a package counts as one module of the table."""
    return ".".join(name.split(".")[:2])


def _imports(file: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            out |= {_unit(a.name) for a in node.names if a.name.startswith("samlab.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "samlab":
                out |= {f"samlab.{a.name}" for a in node.names}
            elif node.module.startswith("samlab."):
                out.add(_unit(node.module))
    return out


def _sources() -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for file in sorted((ROOT / "samlab").rglob("*.py")):
        parts = file.relative_to(ROOT / "samlab").with_suffix("").parts
        if parts == ("__init__",) or parts[-1] == "__main__":
            continue
        out.setdefault(f"samlab.{parts[0]}", []).append(file)
    return out


def test_the_table_lists_every_module():
    rows, sources = _rows(), _sources()
    assert len(rows) > 20
    assert set(sources) == set(rows), (set(sources) ^ set(rows))


def test_no_module_imports_one_listed_below_it():
    rows = _rows()
    upward = [
        f"{file.relative_to(ROOT)} imports {name}"
        for unit, files in _sources().items()
        for file in files
        for name in sorted(_imports(file) - {unit})
        if name in rows and rows[name] > rows[unit]
    ]
    assert not upward, upward


def test_the_check_sees_an_upward_import(tmp_path):
    """The parser finds imports inside functions and every ``from samlab import`` form."""
    file = tmp_path / "m.py"
    file.write_text("import torch\nfrom samlab import data, stats as s\ndef f():\n    from samlab.cluster.x import y\n"
                    "    import samlab.methods.sam\n")
    assert _imports(file) == {"samlab.data", "samlab.stats", "samlab.cluster", "samlab.methods"}
