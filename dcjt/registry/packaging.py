"""How the DCN is packaged for MLflow: the code it loads, the requirements it declares.

The model is saved from code (``dcjt/serving/entry.py``), not as a cloudpickled object, and served
by its ONNX graph under ONNX Runtime: no torch. The code that ships with it is what the entry file
reaches through ``dcjt`` imports (``served_files``: decoding and preprocessing, the emotion order,
the input handling and the ONNX Runtime pyfunc) and nothing else: no network definitions, training,
data, configuration or registry code. Its requirements are every third-party package those modules
import, pinned to the versions it was trained with, so it loads in an environment built from its
own ``requirements.txt``; MLflow itself is declared as ``mlflow-skinny`` (the scoring server and
pyfunc loading without MLflow's tracking server, UI and their dependencies).
"""

from __future__ import annotations

import ast
import importlib.metadata
import shutil
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # dcjt/
MODEL_CODE = PACKAGE_ROOT / "serving" / "entry.py"
# Distributions the served modules import (onnxruntime, numpy, pandas, PIL, cv2) and MLflow's
# skinny build; tests check this list against the packaged code's imports.
SERVING_DISTRIBUTIONS = ("mlflow-skinny", "onnxruntime", "numpy", "pandas", "pillow", "opencv-python-headless")


def serving_requirements() -> list[str]:
    """``name==version`` for each serving distribution as installed (public version: a local
    build's ``+suffix`` is dropped so PyPI's wheel satisfies it)."""
    return [f"{d}=={importlib.metadata.version(d).split('+')[0]}" for d in SERVING_DISTRIBUTIONS]


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a source file imports anywhere (module level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def module_file(name: str) -> Path:
    """The source file of a ``dcjt`` module name (a package's ``__init__.py``)."""
    path = PACKAGE_ROOT.parent.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def served_files() -> list[Path]:
    """The model's code: the entry file and every ``dcjt`` module it reaches through imports, with
    the ``__init__.py`` of each package on the way."""
    files: set[Path] = set()
    todo = [MODEL_CODE]
    while todo:
        path = todo.pop()
        if path in files:
            continue
        files.add(path)
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] == "dcjt":
                todo += [module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    return sorted(files)


def stage_code(folder: Path) -> Path:
    """Copy the served modules into ``folder/dcjt`` (the model's ``code_paths`` entry)."""
    target = folder / "dcjt"
    for path in served_files():
        dest = target / path.relative_to(PACKAGE_ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return target
