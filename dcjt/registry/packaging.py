"""How the DCN is packaged for MLflow: the code it loads, the requirements it declares.

The model is saved from code (``dcjt/serving/entry.py``), not as a cloudpickled object. The code
that ships with it is an explicit list of folders of the package, ``SERVED_FOLDERS`` (the model:
networks, emotion order, image preprocessing, the forward pass; and the pyfunc model), and nothing
else: no training, data, configuration or registry code (``tests`` check that no served module
imports from outside these folders). Its requirements are every third-party package those modules
import, pinned to the versions it was trained with, so it loads in an environment built from its
own ``requirements.txt``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import shutil
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # dcjt/
MODEL_CODE = PACKAGE_ROOT / "serving" / "entry.py"
SERVED_FOLDERS = ("model", "serving")
# Distributions the served modules import (torch, torchvision, numpy, pandas, PIL, cv2); MLflow
# adds itself. tests check this list against the packaged code's imports.
SERVING_DISTRIBUTIONS = ("torch", "torchvision", "numpy", "pandas", "pillow", "opencv-python-headless")


def serving_requirements(torch_index: str | None = None) -> list[str]:
    """``name==version`` for each serving distribution as installed (public version: a CUDA
    build's ``+cu128`` suffix is dropped so the CPU wheel satisfies it too). ``torch_index``: an
    extra index listed first (PyTorch's CPU index: its ``+cpu`` wheel of the same version sorts
    above PyPI's, so pip installs torch without CUDA's libraries)."""
    pins = [f"{d}=={importlib.metadata.version(d).split('+')[0]}" for d in SERVING_DISTRIBUTIONS]
    return ([f"--extra-index-url {torch_index}"] if torch_index else []) + pins


def served_files() -> list[Path]:
    """The package's ``__init__`` and every module of ``SERVED_FOLDERS``: the model's code."""
    files = [PACKAGE_ROOT / "__init__.py"]
    for folder in SERVED_FOLDERS:
        files += sorted((PACKAGE_ROOT / folder).rglob("*.py"))
    return files


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a source file imports anywhere (module level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def stage_code(folder: Path) -> Path:
    """Copy the served modules into ``folder/dcjt`` (the model's ``code_paths`` entry)."""
    target = folder / "dcjt"
    for path in served_files():
        dest = target / path.relative_to(PACKAGE_ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return target
