"""How the DCN is packaged for MLflow: the code it loads, the requirements it declares.

The model is saved from code (``dcjt/serving_model.py``), not as a cloudpickled object, with
only the project modules that code imports (found by reading their imports) and requirements
for every third-party package those modules import, pinned to the versions it was trained with.
A model packaged this way loads in an environment built from its own ``requirements.txt``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import shutil
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
MODEL_CODE = PACKAGE_ROOT / "serving_model.py"
# Distributions the serving modules import (torch, torchvision, numpy, pandas, PIL, cv2); MLflow
# adds itself. tests/test_serving_package.py checks this list against the packaged code's imports.
SERVING_DISTRIBUTIONS = ("torch", "torchvision", "numpy", "pandas", "pillow", "opencv-python-headless")


def serving_requirements() -> list[str]:
    """``name==version`` for each serving distribution as installed (public version: a CUDA
    build's ``+cu128`` suffix is dropped so the CPU wheel satisfies it too)."""
    return [f"{d}=={importlib.metadata.version(d).split('+')[0]}" for d in SERVING_DISTRIBUTIONS]


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a source file imports anywhere (module level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_file(name: str) -> Path | None:
    """The file of a ``dcjt`` module (or package) name, or None for names that are not modules."""
    parts = name.split(".")[1:]
    base = PACKAGE_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def code_closure(entry: Path = MODEL_CODE) -> list[Path]:
    """``entry`` and every ``dcjt`` module it imports, transitively, with their packages' ``__init__``."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for parent in path.relative_to(PACKAGE_ROOT).parents:
            init = PACKAGE_ROOT / parent / "__init__.py"
            if init.is_file() and init not in seen:
                todo.append(init)
        for name in imported_modules(path):
            if name == "dcjt" or name.startswith("dcjt."):
                found = _module_file(name)
                if found is not None:
                    todo.append(found)
    return sorted(seen)


def stage_code(folder: Path) -> Path:
    """Copy the serving modules into ``folder/dcjt`` (the model's ``code_paths`` entry)."""
    target = folder / "dcjt"
    for path in code_closure():
        dest = target / path.relative_to(PACKAGE_ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return target
