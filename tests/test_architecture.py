"""The shape of the code: small modules, each importable on its own, no two importing each other, no flags
threaded through the pipeline, and configs that ship inside the package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import machine_sound

PACKAGE = Path(machine_sound.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {module_name(p): p for p in MODULES}


def imports_of(path: Path) -> set[str]:
    """The package's modules that `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            candidates = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in candidates:
            if name in NAMES:
                found.add(name)
                break
    return found - {module_name(path)}


def test_no_module_is_longer_than_300_lines_and_no_flag_is_threaded_through_the_pipeline():
    long = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long
    for path in MODULES:
        text = path.read_text()
        assert "scored_by_id" not in text and "restore_frontend" not in text, path


def test_no_two_modules_import_each_other_even_through_others():
    graph = {name: imports_of(path) for name, path in NAMES.items()}
    assert graph["machine_sound.train"] and graph["machine_sound.predict"]  # the scan finds imports

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                if nxt == goal:
                    return True
                seen.add(nxt)
                todo.append(nxt)
        return False

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a))
    assert not cycles, cycles


def test_every_module_imports_on_its_own():
    """Each module imported first, in an interpreter where no other module of the package is loaded yet."""
    script = (
        "import importlib, sys\n"
        f"for name in {sorted(NAMES)!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'machine_sound' or m.startswith('machine_sound.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "print('imported', len(sys.argv))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_configs_ship_inside_the_package():
    conf = PACKAGE / "conf"
    assert (conf / "train.yaml").is_file() and (conf / "data" / "mimii.yaml").is_file()
    assert not (PACKAGE.parents[1] / "conf").exists()  # no second copy at the repository root
    text = (PACKAGE.parents[1] / "pyproject.toml").read_text()
    assert '"conf/**/*.yaml"' in text and 'machine-sound-train = "machine_sound.train:main"' in text
