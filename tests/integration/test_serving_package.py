"""The registered model loads where only its declared requirements are installed: no torch.

Building a fresh virtualenv needs a package index (the network), so the environment is
emulated instead: the declared requirements and everything they depend on (read from the
installed packages' metadata) are the allowed distributions; (1) every import in the model's
packaged code must come from one of them, and (2) a fresh interpreter in which importing any
other distribution fails loads the registered model and predicts.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
from packaging.requirements import Requirement

from helpers.registry import always, promote_as_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def requirement_closure(requirements: list[str]) -> set[str]:
    """Normalised names of ``requirements`` and of every distribution they need (no extras)."""
    seen: set[str] = set()
    todo = [Requirement(r).name for r in requirements]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def top_level_imports(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _model_dir(store) -> tuple[Path, list[str]]:
    result = promote_as_run(store, always(0))
    folder = Path(mlflow.artifacts.download_artifacts(result["model_uri"]))
    requirements = [line for line in (folder / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    return folder, requirements


def test_every_import_of_the_packaged_code_is_declared(registry):  # noqa: F811
    folder, requirements = _model_dir(registry)
    allowed = requirement_closure(requirements)
    distributions = md.packages_distributions()
    packaged = set(top_level_imports(folder / "code")) | top_level_imports(folder)
    assert "dcjt" in packaged and (folder / "code" / "dcjt" / "serving" / "onnx_runtime.py").is_file()
    shipped = {p.name for p in (folder / "code" / "dcjt").iterdir() if p.is_dir()} - {"__pycache__"}
    assert shipped == {"models", "serving"}  # what the entry file reaches: no training, data or registry code
    assert not (folder / "code" / "dcjt" / "models" / "nets.py").exists()  # no network definitions: no torch
    assert "torch" not in packaged and not any(r.startswith(("torch", "mlflow==")) for r in requirements), requirements
    assert (folder / "artifacts" / "model.onnx").is_file()
    assert "model_code_path" in (folder / "MLmodel").read_text()  # saved from code ...
    assert not list(folder.rglob("*.pkl"))  # ... with no pickled object to load
    undeclared = {
        name: distributions.get(name)
        for name in packaged - set(sys.stdlib_module_names) - {"dcjt"}
        if not any(d.lower().replace("_", "-") in allowed for d in distributions.get(name, []))
    }
    assert not undeclared, f"imports not covered by requirements.txt {requirements}: {undeclared}"


def emulated_site_packages(distributions: list[str], folder: Path) -> Path:
    """A site-packages folder holding only ``distributions`` (links to their installed files)."""
    folder.mkdir(parents=True)
    for name in distributions:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # a dependency for another platform or Python version
        for top in {f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] not in ("..", "__pycache__")}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
    return folder


def test_model_loads_and_predicts_with_only_its_requirements(registry, tmp_path):  # noqa: F811
    folder, requirements = _model_dir(registry)
    site = emulated_site_packages(sorted(requirement_closure(requirements)), tmp_path / "site-packages")
    assert not (site / "dcjt").exists() and not (site / "torch").exists() and (site / "onnxruntime").exists()
    image = registry["table"]["image"].iloc[-1]
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.append({str(site)!r})
        import json, os, mlflow, pandas as pd
        os.environ["DCJT_SERVE_IMAGE_ROOTS"] = {str(Path(image).parent)!r}
        model = mlflow.pyfunc.load_model({str(folder)!r})
        out = model.predict(pd.DataFrame({{"image": [{image!r}]}}))
        code = sys.modules["dcjt.serving.onnx_runtime"].__file__
        torch = "torch" in sys.modules
        print(json.dumps({{"label": int(out["label"][0]), "error": out["error"][0], "code": code, "torch": torch}}))
        """
    )
    # -S: no site-packages of this environment, -E: no PYTHONPATH; only the emulated environment
    proc = subprocess.run([sys.executable, "-S", "-E", "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["label"] == 0 and answer["error"] == "" and not answer["torch"], answer
    assert answer["code"].startswith(str(folder)), answer  # the model's own copy of the code, not the checkout's


def test_served_code_is_what_the_entry_file_reaches_and_imports_no_torch():
    """The served modules are the import closure of the entry file: every third-party import among
    them comes from a declared serving distribution, and none is torch."""
    from dcjt.registry.packaging import MODEL_CODE, SERVING_DISTRIBUTIONS, imported_modules, served_files

    files = served_files()
    names = {p.relative_to(MODEL_CODE.parents[1]).as_posix() for p in files}
    assert {"serving/entry.py", "serving/onnx_runtime.py", "serving/inputs.py", "models/images.py"} <= names
    assert not names & {"models/nets.py", "models/inference.py", "serving/network.py", "serving/export.py"}
    declared = {d.lower() for d in SERVING_DISTRIBUTIONS}
    distributions = md.packages_distributions()
    for path in files:
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top == "dcjt":
                continue
            owners = {d.lower() for d in distributions.get(top, [])}
            assert owners & declared, f"{path.name} imports {name} ({owners}): not a serving distribution"
