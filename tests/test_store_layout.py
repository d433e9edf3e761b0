"""The store's shape, held by tests (issue 15): every SQL statement and every question of which
database engine runs lives in server/store/; its modules stay small enough to read whole; its
public functions take few enough parameters to be called correctly (a write takes one value,
server/store/inputs.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "server" / "store"

MAX_LINES = 400
MAX_PARAMETERS = 8

# SQL built or sent, or the engine asked about, outside server/store/.
_SQL = re.compile(
    r"from sqlalchemy import .*\b(select|insert|update|delete|text|func)\b"
    r"|\bconn\.execute\(|exec_driver_sql|\bdialect\b|is_postgresql|is_sqlite"
)
# workers/listener.py holds the relay's LISTEN connection (asyncpg, no table); server/settings.py
# only says what DATABASE_URL names.
ELSEWHERE_ALLOWED = {"workers/listener.py", "server/settings.py"}


def _modules(top: Path) -> list[Path]:
    return sorted(p for p in top.rglob("*.py") if ".venv" not in p.parts)


def test_no_store_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(STORE)): n
        for p in _modules(STORE)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_public_store_function_takes_more_than_8_parameters() -> None:
    many = []
    for path in _modules(STORE):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if node.name.startswith("_"):
                continue
            a = node.args
            names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
            names = [n for n in names if n not in ("self", "cls")]
            if len(names) > MAX_PARAMETERS:
                many.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({len(names)})")
    assert many == []


def test_no_sql_and_no_engine_check_outside_the_store() -> None:
    found = []
    for top in (ROOT / "server", ROOT / "workers"):
        for path in _modules(top):
            name = str(path.relative_to(ROOT))
            if path.is_relative_to(STORE) or name in ELSEWHERE_ALLOWED:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if _SQL.search(line):
                    found.append(f"{name}:{number}: {line.strip()}")
    assert found == []
