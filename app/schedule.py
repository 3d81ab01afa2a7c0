"""Cron schedules: the expression checked, and the crontab line printed where the stack cannot
schedule. Light on purpose: a bad ``--schedule`` is refused before torch, ZenML or MLflow load."""

from __future__ import annotations

import os
import shlex
import sys

from dcjt.utils.state import REPO_ROOT, state_home


class ScheduleNotSupported(RuntimeError):
    """The active ZenML stack's orchestrator cannot schedule runs."""


CRON_CARRIED = ("MLFLOW_TRACKING_URI",)  # besides DCJT_HOME: where the run's stores are, if set here


def crontab_line(cron: str, argv: list[str]) -> str:
    """A crontab line that runs this command without ``--schedule``: cron's environment is almost
    empty, so the line names the state folder (and the tracking URI, when one is set here; never
    credentials) and appends the output to ``DCJT_HOME/logs/cron.log``; ``%`` is escaped (cron
    reads a bare one as a newline)."""
    args = [a for i, a in enumerate(argv) if a != "--schedule" and (i == 0 or argv[i - 1] != "--schedule")]
    home = state_home().resolve()
    env = {"DCJT_HOME": str(home)} | {k: os.environ[k] for k in CRON_CARRIED if os.environ.get(k)}
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = (
        f"cd {shlex.quote(str(REPO_ROOT))} && {assignments} {shlex.quote(sys.executable)} run.py "
        f"{' '.join(map(shlex.quote, args))} >> {shlex.quote(str(home / 'logs' / 'cron.log'))} 2>&1"
    )
    return f"{cron} {command.replace('%', chr(92) + '%')}"


def check_cron(expression: str) -> str:
    """A cron expression as cron reads it (five fields), or ``ValueError`` saying why not."""
    from croniter import croniter

    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValueError(
            f"--schedule {expression!r}: not a cron expression cron can read (five fields: minute hour day-of-month "
            "month day-of-week, e.g. '0 3 * * *')"
        )
    return expression
