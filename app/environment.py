"""Where a run's state lives and how the stores are opened: ZenML's store, MLflow's tracking store
and registry, the logs. Everything goes under ``DCJT_HOME`` (default ``./state``) unless
``ZENML_CONFIG_PATH`` / ``MLFLOW_TRACKING_URI`` say otherwise. Call ``prepare_environment``
before importing ZenML.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from dcjt.config import PipelineConfig
from dcjt.utils.state import state_home


@contextlib.contextmanager
def state_lock(home: Path):
    """An exclusive lock on the state folder while its stores are initialised: two runs started
    at once on a fresh folder would otherwise both create ZenML's and MLflow's databases."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".init.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


LOCATION_FILE = ".location"


def check_home_location(home: Path) -> None:
    """Make the state folder if missing and record where it was made. ZenML's and MLflow's stores
    hold absolute paths into it (the store's URL, artifact locations, the image caches of cached
    steps), so a copied or moved folder would read and write its old place: stop in one line
    saying what to do instead."""
    from app.preflight import PreflightError

    if home.exists() and not home.is_dir():
        raise PreflightError(f"DCJT_HOME {home} is a file, not a folder: point DCJT_HOME at a folder (it is made if missing)")
    marker = home / LOCATION_FILE
    made = marker.read_text().strip() if marker.is_file() else ""
    if made and made != str(home):
        raise PreflightError(
            f"DCJT_HOME {home} was moved or copied from {made}: its ZenML and MLflow stores hold absolute paths "
            f"into {made}, so runs here would read and write there; set DCJT_HOME={made} (move the folder back), "
            "or start from an empty DCJT_HOME (a copy cannot be used in place)"
        )
    if not made:
        home.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{home}\n")


def prepare_environment(cfg: PipelineConfig | None = None) -> str:
    """Point ZenML and MLflow at their stores; returns the MLflow tracking URI."""
    home = state_home()
    check_home_location(home)
    os.environ.setdefault("ZENML_CONFIG_PATH", str(home / "zenml"))
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    os.environ.setdefault("ZENML_LOGGING_COLORS_DISABLED", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("AUTO_OPEN_DASHBOARD", "false")
    configured = cfg.mlflow.tracking_uri if cfg is not None else None
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    from app.console import quiet_third_party, route_stops

    quiet_third_party(home)
    route_stops(home)
    mlflow.set_tracking_uri(uri)
    return uri


# MLflow 3's UI opens an experiment on its GenAI overview unless it carries this kind.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(name: str) -> None:
    """Create the experiment (artifacts under DCJT_HOME when the store is local) as a classic
    machine-learning experiment, so the UI opens on its training runs."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        local = mlflow.get_tracking_uri().startswith("sqlite:")
        location = (state_home() / "mlartifacts" / name).as_uri() if local else None
        mlflow.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
    elif experiment.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
        for key, value in EXPERIMENT_KIND.items():
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)


def initialise_stores(experiment: str) -> None:
    """Create ZenML's store and stack and MLflow's database and experiment, one process at a time."""
    with state_lock(state_home()):
        from zenml.client import Client

        _ = Client().active_stack_model  # creates the store, the default user and stack if new
        ensure_experiment(experiment)
