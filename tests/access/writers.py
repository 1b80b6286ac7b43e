"""Find the functions of `core` that write to the database, by reading their source (AST).

A function *writes* when its body (nested functions included) adds, deletes or merges through a
session, runs an ORM/Core INSERT, UPDATE or DELETE, assigns attributes of a loaded row inside a
transaction, or calls a private helper of `core` that does. Public functions reached that way are the
entries that must check their actor (`core.access.guarded`); functions that take a session (``s``,
``session``, ``conn``) run inside their caller's transaction and are the caller's business.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
#: persistence primitives (engine, sessions, migrations, models) are not actions
SKIP = ("core/store/",)
_SESSION_NAMES = {"s", "session", "sess"}
_SESSION_PARAMS = {"s", "session", "sess", "conn", "connection"}
_WRITE_METHODS = {"add", "add_all", "delete", "merge", "bulk_save_objects", "bulk_insert_mappings",
                  "bulk_update_mappings"}
_SQL_WRITERS = {"insert", "update", "delete"}


@dataclass
class Fn:
    qualname: str
    module: str
    node: ast.AST
    cls: str | None
    params: list[str]
    direct: list[str] = field(default_factory=list)  # why it writes by itself
    calls: set[str] = field(default_factory=set)  # qualnames of core functions it calls

    @property
    def public(self) -> bool:
        parts = self.qualname[len(self.module) + 1:].split(".")
        return not any(p.startswith("_") for p in parts)

    @property
    def takes_session(self) -> bool:
        first = [p for p in self.params if p not in ("self", "cls")][:1]
        return bool(first) and first[0] in _SESSION_PARAMS


def _module_name(path: Path) -> str:
    rel = path.relative_to(CORE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


class _Scanner(ast.NodeVisitor):
    def __init__(self, fn: Fn, imports: dict[str, str], sql_names: set[str], local_defs: dict[str, str]):
        self.fn, self.imports, self.sql_names = fn, imports, sql_names
        self.local_defs = {k: v for k, v in local_defs.items() if not k[:1].isupper()}
        self.local_classes = {k: v for k, v in local_defs.items() if k[:1].isupper()}
        src = ast.unparse(fn.node)
        self.in_transaction = bool(re.search(r"\btransaction\(|\bSession\(|\.begin\(\)", src)) or fn.takes_session

    def visit_Call(self, node: ast.Call):
        f = node.func
        if isinstance(f, ast.Attribute):
            recv = f.value
            if f.attr in _WRITE_METHODS and isinstance(recv, ast.Name) and recv.id in _SESSION_NAMES:
                self.fn.direct.append(f"{recv.id}.{f.attr}()")
            elif f.attr in ("insert", "delete") and isinstance(recv, ast.Attribute) and recv.attr == "__table__":
                self.fn.direct.append(f"__table__.{f.attr}()")
            elif f.attr == "to_sql":
                self.fn.direct.append("to_sql()")
            # module.function or self.method calls
            if isinstance(recv, ast.Name) and recv.id in self.imports:
                self.fn.calls.add(f"{self.imports[recv.id]}.{f.attr}")
            elif isinstance(recv, ast.Name) and recv.id == "self" and self.fn.cls:
                self.fn.calls.add(f"{self.fn.module}.{self.fn.cls}.{f.attr}")
        elif isinstance(f, ast.Name):
            if f.id in self.sql_names:
                self.fn.direct.append(f"{f.id}()")
            elif f.id == "setattr" and self.in_transaction:
                self.fn.direct.append("setattr(row)")
            if f.id in self.local_defs:
                self.fn.calls.add(self.local_defs[f.id])
            elif f.id in self.imports:
                self.fn.calls.add(self.imports[f.id])
                self.fn.calls.add(self.imports[f.id] + ".__init__")  # a class: its constructor
            if f.id in self.local_classes:
                self.fn.calls.add(self.local_classes[f.id] + ".__init__")
        self.generic_visit(node)

    def _assign(self, targets):
        if not self.in_transaction:
            return
        for t in targets:
            for node in ast.walk(t):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id not in (
                        "self", "cls", "args", "st"):
                    self.fn.direct.append(f"{node.value.id}.{node.attr} =")
                    return

    def visit_Assign(self, node: ast.Assign):
        self._assign(node.targets)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign):
        self._assign([node.target])
        self.generic_visit(node)


def scan(root: Path = CORE) -> dict[str, Fn]:
    """Every function and method of `core` with its direct writes and the core functions it calls."""
    fns: dict[str, Fn] = {}
    trees = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        if any(rel.startswith(s) for s in SKIP):
            continue
        module = _module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        imports: dict[str, str] = {}
        sql_names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:
                    pkg = module.split(".")
                    if not path.name == "__init__.py":
                        pkg = pkg[:-1]
                    pkg = pkg[:len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                    base = ".".join(pkg + [node.module]) if node.module else ".".join(pkg)
                for a in node.names:
                    name = a.asname or a.name
                    if base.startswith("sqlalchemy") and a.name in _SQL_WRITERS:
                        sql_names.add(name)
                    elif base.startswith("core"):
                        imports[name] = f"{base}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("core"):
                        imports[a.asname or a.name] = a.name
        local_defs = {n.name: f"{module}.{n.name}" for n in tree.body
                      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                fn = Fn(f"{module}.{node.name}", module, node, None, [a.arg for a in node.args.args + node.args.kwonlyargs])
                fns[fn.qualname] = fn
                trees.append((fn, imports, sql_names, local_defs))
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        fn = Fn(f"{module}.{node.name}.{item.name}", module, item, node.name,
                                [a.arg for a in item.args.args + item.args.kwonlyargs])
                        fns[fn.qualname] = fn
                        trees.append((fn, imports, sql_names, local_defs))
    for fn, imports, sql_names, local_defs in trees:
        _Scanner(fn, imports, sql_names, local_defs).visit(fn.node)
    return fns


def _resolve(fns: dict[str, Fn], name: str) -> Fn | None:
    """A call target: the function itself, or what a package re-exports under that name."""
    if name in fns:
        return fns[name]
    head, _, tail = name.rpartition(".")
    for q, f in fns.items():  # `from core.ingest import save_import` -> core.ingest.persist.save_import
        if q.endswith("." + tail) and q.startswith(head + ".") and q.count(".") == name.count(".") + 1:
            return f
    return None


def writers(fns: dict[str, Fn] | None = None) -> dict[str, list[str]]:
    """Public functions of `core` that write, directly or through private helpers: qualname -> why."""
    fns = fns if fns is not None else scan()
    memo: dict[str, list[str]] = {}

    def why(fn: Fn, seen: frozenset) -> list[str]:
        if fn.qualname in memo:
            return memo[fn.qualname]
        out = list(fn.direct)
        for call in sorted(fn.calls):
            target = _resolve(fns, call)
            if target is None or target.qualname in seen or target.public:
                continue
            if target.takes_session and not fn.takes_session:
                pass  # a session helper called with the caller's session: the caller writes
            sub = why(target, seen | {target.qualname})
            if sub:
                out.append(f"via {target.qualname[len(target.module) + 1:]}")
        memo[fn.qualname] = out
        return out

    out = {}
    for fn in fns.values():
        if fn.public and not fn.takes_session:
            reasons = why(fn, frozenset({fn.qualname}))
            if reasons:
                out[fn.qualname] = reasons
    return out


if __name__ == "__main__":  # pragma: no cover - a listing for people
    for name, reasons in sorted(writers().items()):
        print(f"{name}: {', '.join(dict.fromkeys(reasons))}")
