"""What a run prints: the pipeline's progress and results; third-party chatter goes to a log file.

Great Expectations announces its setup at INFO (``Skipping registering function ...``, temporary
docs sites, datasource dumps), MLflow logs its database migrations, progress bars and registry
messages, and imported libraries raise FutureWarnings about Python versions. None of it tells the
user anything about the run, so it is written to ``$DCJT_HOME/logs/third-party.log`` instead.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

THIRD_PARTY_LOGGERS = ("great_expectations", "mlflow", "alembic", "py.warnings", "urllib3", "httpx", "git")


def third_party_log(home: Path) -> Path:
    return home / "logs" / "third-party.log"


def quiet_third_party(home: Path) -> Path:
    """Send the third-party loggers and Python warnings to the log file (call after importing
    MLflow, which installs its own console handler when imported)."""
    path = third_party_log(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
    logging.captureWarnings(True)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return path


# --- stops the CLI reports in one line ---------------------------------------------------------------
ZENML_STEP_LOGGERS = ("zenml.orchestrators.step_launcher", "zenml.orchestrators.local.local_orchestrator")


# Failures whose message says what is wrong and what to do: the CLI prints them in one line (the
# traceback goes to the log file). By defining module and class name.
KNOWN_STOPS = (
    ("dcjt.data.labels", "ValidationSplitError"),
    ("dcjt.method.health", "GateError"),
    ("dcjt.train.budget", "BudgetError"),
    ("dcjt.config_files", "ConfigError"),
    ("app.preflight", "PreflightError"),
    ("dcjt.data.readers", "DatasetFormatError"),
    ("dcjt.data.labels", "LabelTableError"),
    ("dcjt.method.extras", "ExtraDatasetError"),
    ("dcjt.data.cache", "CacheError"),
)


def known_stops() -> tuple[type[BaseException], ...]:
    """The known stops' classes whose modules are loaded: an exception can only be of a class whose
    module is, so none is imported here (a stop raised before torch loads is named without it)."""
    return tuple(getattr(sys.modules[module], name) for module, name in KNOWN_STOPS if module in sys.modules)


class StepContainerFailed(RuntimeError):
    """A step that ran in its own container (ZenML's local_docker orchestrator) failed there."""


def container_stop(exc: BaseException) -> StepContainerFailed | None:
    """A step container's failure in one line: the step, the exit code, the step's last words
    (its own error, a gate's message among them), and that a rerun resumes from ZenML's cache."""
    try:
        from docker.errors import ContainerError
    except ImportError:
        return None
    if not isinstance(exc, ContainerError):
        return None
    args = list(exc.command or []) if not isinstance(exc.command, str) else exc.command.split()
    step = args[args.index("--step_name") + 1] if "--step_name" in args else "a step"
    said = [
        x.strip()
        for x in (exc.stderr or b"").decode(errors="replace").splitlines()
        if x.strip() and not x.startswith(("│", "╭", "╰"))
    ]
    why = said[-1][:400] if said else ("killed (docker kill, or out of memory)" if exc.exit_status in (137, 143) else "no output")
    return StepContainerFailed(
        f"step {step} failed in its container (exit {exc.exit_status}): {why}; "
        "the finished steps are cached, a rerun resumes after them"
    )


class Interrupted(RuntimeError):
    """The run was stopped by a signal (SIGTERM, Ctrl-C): ZenML raises its own exception in the
    step that was running."""


def interrupted_stop(exc: BaseException) -> Interrupted | None:
    zenml = sys.modules.get("zenml.exceptions")  # ZenML's own stops exist only once it was imported
    kinds = (KeyboardInterrupt,) + ((zenml.RunInterruptedException, zenml.RunStoppedException) if zenml else ())
    if not isinstance(exc, kinds):
        return None
    return Interrupted(
        "interrupted (SIGTERM or Ctrl-C): the run stopped; the same command resumes it from ZenML's cache and "
        "the training's last checkpoint"
    )


def known_stop(exc: BaseException | None) -> BaseException | None:
    """The first known stop in ``exc``'s chain (ZenML may wrap a step's exception), or None."""
    seen = set()
    kinds = known_stops()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kinds):
            return exc
        if (failed := container_stop(exc) or interrupted_stop(exc)) is not None:
            return failed
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def error_log(home: Path) -> Path:
    return home / "logs" / "errors.log"


class _StopsToFile(logging.Filter):
    """ZenML prints a failed step's error and traceback; for a known stop the CLI's one line says
    it all, so these records go to the error log only."""

    def __init__(self, path: Path):
        super().__init__()
        self.handler = logging.FileHandler(path)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        exc = exc or next((a for a in record.args or () if isinstance(a, BaseException)), None)
        if exc is not None and known_stop(exc) is not None:
            self.handler.handle(record)
            return False
        return True


class _NoDashboardHint(logging.Filter):
    """ZenML suggests ``zenml login --local`` after every run on a local store; that needs ZenML's
    server extra, which this project does not install (the run's end names the ``zenml`` CLI
    command that lists runs instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "zenml login --local" not in record.getMessage()


def route_stops(home: Path) -> None:
    """Known stops leave ZenML's console output (they reach the error log; the CLI prints one line)."""
    path = error_log(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in ZENML_STEP_LOGGERS:
        logger = logging.getLogger(name)
        logger.filters = [f for f in logger.filters if not isinstance(f, _StopsToFile)] + [_StopsToFile(path)]
    hints = logging.getLogger("zenml.pipelines.pipeline_definition")
    hints.filters = [f for f in hints.filters if not isinstance(f, _NoDashboardHint)] + [_NoDashboardHint()]


def log_stop(home: Path, exc: BaseException) -> Path:
    """Write ``exc`` with its traceback to the error log; returns the log's path."""
    path = error_log(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write("".join(traceback.format_exception(exc)))
    return path


def stop_in_one_line(exc: BaseException) -> None:
    """A failure whose message says what to do ends the command in one line (exit code 1); its
    traceback goes to the error log. Anything else is raised as it is."""
    import click

    from dcjt.utils.state import state_home

    stop = known_stop(exc)
    if stop is None:
        raise exc
    path = log_stop(state_home(), exc)
    raise click.ClickException(f"{stop} (traceback: {path})") from None


def echo_outcome(cfg, outcome) -> None:
    """The comparison of a finished run: every row's test and validation accuracy and budget."""
    import click

    table = outcome.comparison.assign(
        accuracy=lambda d: (d["accuracy"] * 100).round(2), val_accuracy=lambda d: (d["val_accuracy"] * 100).round(2)
    )
    budget = "until validation stops improving" if cfg.budget.mode == "converged" else "equal optimiser steps"
    click.echo(
        f"\nAccuracy (%) on the target's test split and, where every model was selected, its validation split; "
        f"every row: the DCN's recipe, {budget}:"
    )
    click.echo(table.to_string(index=False))
    failed = outcome.summary.failed_gates if outcome.summary is not None else []
    if failed:  # gates.mode=warn: the run went on; say so as loudly as a stop would
        click.echo(f"\nwarning: {len(failed)} health gate(s) failed (gates.mode=warn); the rows above rest on them:")
        for line in failed:
            click.echo(f"warning:   {line}")
