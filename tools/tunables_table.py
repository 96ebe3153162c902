"""The README's table of tunables, generated from :class:`mldht.core.config.NodeConfig`.

Each field's name, default and docstring (the string under it in config.py) make one
row. ``python tools/tunables_table.py`` prints the table; ``--write`` puts it into
README.md between the ``<!-- tunables:start -->`` and ``<!-- tunables:end -->`` markers.
``tests/core/test_config_doc.py`` fails when the README's table differs (so it cannot
drift from the code).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "mldht" / "core" / "config.py"
README = ROOT / "README.md"
START, END = "<!-- tunables:start -->", "<!-- tunables:end -->"


def rows() -> list[tuple[str, str, str]]:
    """``(name, default, meaning)`` of every NodeConfig field, in order."""
    tree = ast.parse(CONFIG.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "NodeConfig")
    out: list[tuple[str, str, str]] = []
    body = cls.body
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        default = ast.unparse(node.value) if node.value is not None else "(required)"
        doc = ""
        nxt = body[i + 1] if i + 1 < len(body) else None
        if (
            isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            doc = " ".join(nxt.value.value.split())
        out.append((node.target.id, default, doc))
    return out


def table() -> str:
    lines = ["| Tunable | Default | Meaning |", "| --- | --- | --- |"]
    for name, default, doc in rows():
        meaning = doc.replace("|", "\\|")
        lines.append(f"| `{name}` | `{default}` | {meaning} |")
    return "\n".join(lines)


def readme_table(text: str) -> str | None:
    """The table between the markers of ``text``, or None without markers."""
    if START not in text or END not in text:
        return None
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def write() -> None:
    text = README.read_text()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    README.write_text(f"{head}{START}\n{table()}\n{END}{tail}")


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    else:
        print(table())
