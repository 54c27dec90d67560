"""The house rules, read from the source: one namespace, floors that only import down,
no cycles between packages, a scheduler core that is small rooms and loads no client."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"corral": "corral", "tasks": "corral.tasks", "scheduler": "corral.scheduler",
           "workers": "corral.workers", "pipelines": "corral.pipelines"}

# Lowest first. A module may import its own floor's modules and any floor below it.
FLOORS: list[tuple[str, list[str]]] = [
    ("ground", ["corral.base"]),
    ("pipelines", ["corral.pipelines"]),
    ("scheduler and worker runtime", ["corral.scheduler", "corral.tasks"]),
    ("node agent", ["corral.workers"]),
    ("front door", ["corral"]),
]


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def floor_of(module: str) -> int:
    best, floor = -1, -1
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, floor = len(prefix), index
    return floor


def package_of(module: str) -> str:
    return FLOORS[floor_of(module)][1][0] if floor_of(module) >= 0 else module


def edges() -> list[tuple[str, str]]:
    known = modules()
    out = []
    for module, path in known.items():
        for target in imports(path):
            if target in known and target != module:
                out.append((module, target))
    return out


def test_every_top_level_folder_is_a_subpackage_of_corral_and_none_is_imported_bare() -> None:
    bare = [(m, t) for m, path in modules().items() for t in imports(path)
            if t.split(".")[0] in ("tasks", "scheduler", "workers", "pipelines")]
    assert bare == []


def test_no_module_imports_a_floor_above_its_own() -> None:
    upward = [(m, t, FLOORS[floor_of(t)][0]) for m, t in edges() if floor_of(t) > floor_of(m)]
    assert upward == []


def test_the_packages_import_each_other_without_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for m, t in edges():
        a, b = package_of(m), package_of(t)
        if a != b:
            graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [p for p in graph if reaches(p, p, {p})] == []


def test_no_module_of_the_scheduler_core_is_over_400_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "scheduler" / "core").glob("*.py")}
    assert sizes and {name: n for name, n in sizes.items() if n > 400} == {}


def test_importing_the_scheduler_core_loads_no_celery_redis_or_etcd_module() -> None:
    code = ("import sys, corral.scheduler.core; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'celery', 'kombu', 'redis', 'etcd3', 'grpc', 'billiard'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT / "tests")
    assert out.stdout.strip() == "[]"


def test_the_scheduler_accepts_exactly_the_algorithms_the_workers_ship() -> None:
    from corral.base.keys import BUILTIN_ALGORITHMS, JOB_ALGORITHM
    from corral.tasks import registry

    # Command jobs are accepted only where a node declares them (CORRAL_JOBS=1); models only
    # where their extra is installed.
    models = {"text.embed", "vision.ocr", "vision.textdet"}
    assert set(registry.names()) - models == BUILTIN_ALGORITHMS | {JOB_ALGORITHM}
