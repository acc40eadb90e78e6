"""Every module a stage can import is covered by that stage's ``deps`` in ``dvc.yaml``.

The closure starts from the stage's notebook (its code cells), its runner (the module in
``python -m MODULE``) and what the runner imports by name from the registry (the section's
config and a step stage's module), follows every ``sobolev`` import (top-level or inside
functions), adds the ``__init__.py`` of every package on the way, and fails when a reached file
lies under no dep path (a file or a folder) of that stage.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from sobolev.pipeline import STAGES

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "sobolev"


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of module ``name`` inside the package, or None (outside it / not a module)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(source: str) -> set[str]:
    """Every module name an import statement in ``source`` may load (``from a import b``: ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def notebook_source(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    # IPython magics are not Python: drop them before parsing.
    return "\n".join(line for cell in code for line in cell.splitlines() if not line.lstrip().startswith(("%", "!")))


def closure(sources: list[str], root: Path = ROOT) -> set[Path]:
    """Files of the package reached from ``sources`` by imports, with their packages' ``__init__``."""
    todo = [name for s in sources for name in imported_modules(s)]
    seen: set[Path] = set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            f = module_file(".".join(parts[:k]), root)
            if f is not None and f not in seen:
                seen.add(f)
                todo += list(imported_modules(f.read_text()))
    return seen


def stage_closures(dvc_yaml: Path = ROOT / "dvc.yaml", root: Path = ROOT) -> dict[str, tuple[set[Path], list[Path]]]:
    """Per stage (``foreach`` stages once): the files its notebook and runner reach, and its deps."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        deps = [root / d for d in body.get("deps", []) if "${" not in d]
        sources = []
        runner = re.search(r"python -m ([\w.]+)", body["cmd"])
        if runner and module_file(runner.group(1), root):
            sources.append(f"import {runner.group(1)}")
        if name in STAGES:  # loaded by name (importlib) by the pipeline: the config, a step's module
            stage = STAGES[name]
            sources.append(f"import sobolev.{stage.section}.config")
            if stage.step:
                sources.append(f"import {stage.module()}")
        sources += [notebook_source(d) for d in deps if d.suffix == ".ipynb"]
        out[name] = (closure(sources, root), deps)
    return out


def uncovered(reached: set[Path], deps: list[Path]) -> list[str]:
    return sorted(str(f.relative_to(ROOT)) for f in reached if not any(f == d or d in f.parents for d in deps))


@pytest.mark.parametrize("stage", sorted(stage_closures()))
def test_stage_deps_cover_its_import_closure(stage: str) -> None:
    reached, deps = stage_closures()[stage]
    assert reached, f"stage {stage}: found no package module to check"
    missing = uncovered(reached, deps)
    assert not missing, f"stage {stage} imports modules missing from its dvc.yaml deps: {missing}"


def test_closure_sees_imports_inside_functions_and_packages(tmp_path: Path) -> None:
    """The closure follows a lazy import and adds the package's __init__ (a missing dep fails)."""
    pkg = tmp_path / "sobolev" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "sobolev" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from sobolev.sub import b\n")
    (pkg / "b.py").write_text("x = 1\n")
    reached = closure(["import sobolev.sub.a"], tmp_path)
    names = sorted(str(f.relative_to(tmp_path)) for f in reached)
    assert names == ["sobolev/__init__.py", "sobolev/sub/__init__.py", "sobolev/sub/a.py", "sobolev/sub/b.py"]
    deps = [tmp_path / "sobolev" / "sub" / "a.py"]
    missing = sorted(str(f.relative_to(tmp_path)) for f in reached if not any(f == d or d in f.parents for d in deps))
    assert "sobolev/sub/b.py" in missing
