"""The core is pure and the public surface explicit."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import mldht

CORE = Path(mldht.__file__).parent / "core"
FORBIDDEN = {"anyio", "socket", "time", "random", "asyncio", "trio", "threading", "sqlite3"}


def test_core_modules_import_nothing_impure() -> None:
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in FORBIDDEN:
                    # allowed only for annotations, under `if TYPE_CHECKING:`
                    assert _under_type_checking(tree, node), f"{path.name} imports {name}"


def _under_type_checking(tree: ast.AST, target: ast.AST) -> bool:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
            and any(target is n for stmt in node.body for n in ast.walk(stmt))
        ):
            return True
    return False


def test_importing_core_loads_no_anyio_or_socket() -> None:
    code = (
        "import sys; import mldht.core.node, mldht.sim; "
        "bad = {'anyio', 'socket', 'trio'} & set(sys.modules); print(sorted(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names() -> None:
    for name in mldht.__all__:
        assert hasattr(mldht, name), name
    assert {"MldhtError", "KRPCError", "InvalidArgument", "QueryTimeout"} <= set(mldht.__all__)
