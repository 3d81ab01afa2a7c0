"""Whether a registered version can be served: light on purpose (MLflow only, no torch), so the
commands that serve a model (``predict``, ``serve``, ``score``) refuse one without an ONNX graph,
and load one with it, without the training side's imports."""

from __future__ import annotations

import re

import mlflow

EXPORT_COMMAND = "python run.py export-onnx --model {uri}"


class ExportInputError(ValueError):
    """A model URI or image folder the export cannot use; the message names it."""


def registered_version(uri: str):
    """The registry's version behind ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
    match = re.fullmatch(r"models:/([^/@]+)(?:/(\d+)|@([\w-]+))", uri)
    if not match:
        raise ExportInputError(f"{uri}: not a registered version (models:/NAME/VERSION or models:/NAME@ALIAS)")
    name, version, alias = match.groups()
    client = mlflow.MlflowClient()
    try:
        return client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as exc:
        raise ExportInputError(f"{uri}: no such registered version ({str(exc).splitlines()[0][:200]})") from None


def has_onnx(model_uri: str) -> bool:
    """Whether the logged model behind ``model_uri`` is served by an ONNX graph."""
    flavor = mlflow.models.get_model_info(model_uri).flavors.get("python_function", {})
    return "onnx" in (flavor.get("artifacts") or {})


def without_onnx(model_uri: str):
    """The registered version behind ``model_uri``, refused when it already has an ONNX graph
    (``export-onnx`` checks this before it loads torch)."""
    source = registered_version(model_uri)
    if has_onnx(model_uri):
        raise ExportInputError(f"{model_uri} (version {source.version}) already has an ONNX export")
    return source


def onnx_problem(model_uri: str) -> str | None:
    """Why ``model_uri`` cannot be served with ONNX Runtime (it has no ONNX graph), or None."""
    if has_onnx(model_uri):
        return None
    return (
        f"{model_uri} has no ONNX export (registered before exports, or not a DCJT model) and is served with "
        f"ONNX Runtime only; add one with: {EXPORT_COMMAND.format(uri=model_uri)}"
    )
