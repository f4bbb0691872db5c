"""The package's imports flow one way (README "Layout"): each module imports only from its own
layer or a lower one, never back up. Every import counts, wherever it is written: at the top of a
module, inside a function (a lazy import is still a dependency), or under TYPE_CHECKING.

A subpackage is one unit: models/, analysis/ and sweep/ (their __init__ included) each sit in one
layer, so modules inside a subpackage may import each other. The package's own __init__ (the
public API) sits on the top layer with the CLI, the two entry points.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "interp_grok"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

# lowest first; a name is a top-level module or subpackage of interp_grok ("" is its __init__)
LAYERS: list[tuple[str, ...]] = [
    ("config", "noise"),  # settings; the label-noise distributions
    ("data", "models", "optim"),  # the dataset; the model families (their math and losses); the optimizers
    ("evaluation",),  # metrics of a model on the grid (train uses it)
    ("rundir",),  # the run directory format, written by train and read by everything above
    ("train",),
    ("analysis",),  # pure measurements on tensors, and the whole-run pipeline over a run directory
    ("sweep", "reference"),  # grids of runs and their table; the reference runs in checkpoints/
    ("plotting",),
    ("cli", ""),  # the two entry points: the CLI and the public API (interp_grok/__init__.py)
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    """'analysis.pipeline' for interp_grok/analysis/pipeline.py, 'analysis' for its __init__, '' for the package's."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root: Path = PACKAGE_DIR) -> dict[str, ast.Module]:
    return {module_name(f, root): ast.parse(f.read_text(), filename=str(f)) for f in sorted(root.rglob("*.py"))}


def imported_modules(name: str, tree: ast.Module, is_package: bool, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (relative names, as module_name gives them)."""

    def resolve(target: str, names: list[str]) -> set[str]:
        # `from P import n` imports the module P.n when there is one, else the name n from P
        out = set()
        for n in names:
            sub = f"{target}.{n}" if target else n
            out.add(sub if sub in known else target)
        return out

    here = name.split(".") if name else []
    if not is_package:
        here = here[:-1]  # a module's relative imports start from its package
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
            if node.level - 1 > len(here):
                raise AssertionError(f"{name}: relative import beyond the package")
            target = ".".join(base + (node.module.split(".") if node.module else []))
            found |= resolve(target, [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found |= resolve(node.module[len(PACKAGE) + 1:], [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == PACKAGE:
                    found.add(a.name[len(PACKAGE) + 1:])
    found.discard(name)
    return found


def layer(name: str) -> int:
    return LAYER[name.split(".")[0]]


def upward_imports(modules: dict[str, ast.Module], packages: set[str]) -> list[str]:
    known = set(modules)
    bad = []
    for name, tree in modules.items():
        for dep in sorted(imported_modules(name, tree, name in packages, known)):
            if layer(dep) > layer(name):
                bad.append(f"{PACKAGE}.{name or '__init__'} (layer {layer(name)}) imports "
                           f"{PACKAGE}.{dep or '__init__'} (layer {layer(dep)})")
    return bad


def _packages(root: Path = PACKAGE_DIR) -> set[str]:
    return {module_name(f, root) for f in root.rglob("__init__.py")}


def test_every_module_has_a_layer():
    unplaced = [m for m in package_modules() if m.split(".")[0] not in LAYER]
    assert not unplaced, f"add these modules to LAYERS in tests/test_layout.py: {unplaced}"
    assert not set(LAYER) - {m.split(".")[0] for m in package_modules()}, "LAYERS names a module that is gone"


def test_imports_flow_one_way():
    bad = upward_imports(package_modules(), _packages())
    assert not bad, "imports that go back up the layers:\n" + "\n".join(bad)


def test_the_graph_is_read():
    """The checker sees the imports the layers are about (a parser that saw nothing would pass)."""
    modules, packages = package_modules(), _packages()
    deps = {m: imported_modules(m, t, m in packages, set(modules)) for m, t in modules.items()}
    assert "rundir" in deps["train"] and "evaluation" in deps["train"]
    assert "train" in deps["sweep.runner"]  # a lazy import inside a function
    assert {"analysis.pipeline", "analysis.phases", "sweep.runner"} <= deps["sweep.table"]
    assert "rundir" in deps["analysis.frames"]  # under TYPE_CHECKING
    assert "models.mlp" in deps["evaluation"] and "config" in deps["models"]
    assert "analysis.pipeline" in deps["analysis.frames"] and "analysis.frames" in deps["analysis.pipeline"]


@pytest.mark.parametrize(("path", "source", "flagged"), [
    ("config.py", "from .train import train\n", True),
    ("models/mlp.py", "def f():\n    from ..analysis.fourier import ipr\n", True),  # lazy: still upward
    ("rundir.py", "from interp_grok import train\n", True),  # absolute import of a module
    ("analysis/pipeline.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..sweep import Grid\n",
     True),
    ("evaluation.py", "from . import __version__\n", True),  # a name from the package's __init__
    ("train.py", "from . import rundir\nfrom .models.mlp import grid_logits\n", False),
    ("sweep/table.py", "from ..analysis import pipeline\nfrom .runner import Grid\n", False),
    ("cli.py", "from . import __version__\n", False),
])
def test_the_checker_flags_a_synthetic_upward_import(tmp_path, path, source, flagged):
    root = tmp_path / PACKAGE
    for rel in ("__init__.py", "config.py", "train.py", "rundir.py", "evaluation.py", "cli.py",
                "models/__init__.py", "models/mlp.py", "analysis/__init__.py", "analysis/fourier.py",
                "analysis/pipeline.py", "sweep/__init__.py", "sweep/runner.py", "sweep/table.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(source if rel == path else "")
    bad = upward_imports(package_modules(root), _packages(root))
    assert bool(bad) == flagged, bad
