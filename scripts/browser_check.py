"""What a team sees in the MLflow UI and in ZenML's dashboard after the main job, checked in a
real browser (Chromium, driven by Playwright), with screenshots for the docs.

A fresh browser (no stored UI preferences) must open the experiment on its training runs (not the
GenAI overview) with readable run names; the pipeline run's page must show the comparison table
as its description; the registry version's page its scores beside its run's baselines, the
per-emotion table and a working link to the model card. Then ``run.py dashboard`` on the same
state: the ZenML run opens without a sign-up survey, its steps include every stage, the relabel
report renders with its Great Expectations result, and the run's metadata links the MLflow run and
names the model version it registered. Each failed check is one line; the exit
code is the number of failed checks. Run through ``scripts/browser_check.sh`` (it installs
Playwright and needs Debian's ``chromium``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from dcjt.utils.state import state_home  # noqa: E402

SHOTS = ROOT / "docs" / "images"
WIDTH, HEIGHT = 1600, 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(uri: str, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                sys.exit(f"browser check: the MLflow UI did not start: {proc.stderr.read()[-500:] if proc.poll() else 'timeout'}")
            time.sleep(1)


def latest_run(uri: str, experiment: str):
    """The newest finished pipeline run (parent) of ``experiment`` and its registered version."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    runs = (
        []
        if exp is None
        else mlflow.search_runs(
            [exp.experiment_id],
            filter_string="tags.`zenml.run_name` != '' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            output_format="list",
        )
    )
    runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    if not runs:
        sys.exit(f"browser check: no finished run in experiment {experiment} of {uri}: run `python run.py demo` first")
    return exp.experiment_id, runs[0]


class Checks:
    def __init__(self):
        self.failed: list[str] = []

    def expect(self, what: str, ok: bool) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failed.append(what)


def visible(page, text: str, timeout: float = 20_000) -> bool:
    try:
        page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout)
        return True
    except Exception:
        return False


def show_rows(page, name: str) -> bool:
    """What a team does first in the runs table: add the rows' one accuracy column and expand the
    pipeline run into its child runs (each reported row's training run holds row.test_accuracy)."""
    try:
        page.get_by_role("button", name="Columns").first.click()
        page.get_by_placeholder("Search columns").first.fill("row.test_accuracy")
        page.get_by_text("row.test_accuracy", exact=True).last.click()
        page.keyboard.press("Escape")
        page.locator(".ag-cell-value", has_text=name[:20]).locator("button").first.click(timeout=5000)  # the run's "+"
        return visible(page, "target_only", timeout=10_000)
    except Exception:
        return False


def close_assistant(page) -> None:
    """MLflow's assistant panel opens itself on a first visit; close it so the page is seen."""
    page.wait_for_timeout(1500)
    close = page.locator("button[aria-label='Close']")
    for i in range(close.count()):
        box = close.nth(i).bounding_box()
        if box and box["y"] < 60 and box["x"] > WIDTH - 100:  # the panel's title row, top right
            close.nth(i).click()
            page.wait_for_timeout(800)
            return


STAGE_STEPS = ("ingest_synthetic", "train_m_a", "select_extra_subset", "train_m_b", "pseudo_label_target")
STAGE_STEPS += ("map_extra_continuous", "relabel_extra", "log_stages", "train_dcn", "register_and_promote", "report_run")


def start_dashboard(port: int) -> subprocess.Popen:
    """``run.py dashboard`` on this state folder; returns once it printed its address."""
    cmd = [sys.executable, str(ROOT / "run.py"), "dashboard", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("ZenML dashboard: "):
        sys.exit(f"browser check: run.py dashboard did not start: {line}{proc.stderr.read()[-500:]}")
    return proc


def zenml_checks(checks: Checks, context, run_id: str | None, run_name: str) -> None:
    """ZenML's dashboard on the same run: the run, its DAG and every stage step, the relabel
    step's report rendered (with its Great Expectations result), the links in the run's metadata
    (the MLflow run, the model version it registered)."""
    if not run_id:
        checks.expect("the MLflow run names its ZenML run (tag zenml.run_id)", False)
        return
    port = free_port()
    dashboard = start_dashboard(port)
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/projects/default/runs/{run_id}")
        checks.expect("the dashboard opens the run (no sign-up survey first)", visible(page, run_name[:20]))
        notice = page.get_by_label("Dismiss local-server notice")
        if notice.count():
            notice.first.click()
        try:
            page.locator(".react-flow__node").first.wait_for(state="visible", timeout=30_000)
            drawn = True
        except Exception:
            drawn = False
        checks.expect("the run's DAG is drawn", drawn)
        page.get_by_label("Timeline view").first.click()  # the DAG's steps as a list, each readable
        missing = [s for s in STAGE_STEPS if not visible(page, s, timeout=5_000)]
        checks.expect(f"the run's steps include every stage ({', '.join(missing) or 'all present'})", not missing)
        page.screenshot(path=str(SHOTS / "zenml-run-steps.png"))
        row = page.get_by_text("relabel_extra", exact=True).first.bounding_box()
        page.mouse.click(row["x"] - 25, row["y"] + row["height"] / 2)  # the row's chevron: its artifacts
        page.get_by_text("relabel_report", exact=True).first.click()
        page.get_by_role("tab", name="Visualization").first.click()
        page.get_by_role("button", name="Load Preview").first.click()
        checks.expect("the relabel report is rendered", visible(page, "RelabelReport"))
        checks.expect("its Great Expectations result is rendered", visible(page, "expect_column_values_to_be_between"))
        page.screenshot(path=str(SHOTS / "zenml-stage-report.png"))
        page.goto(f"http://127.0.0.1:{port}/projects/default/runs/{run_id}")
        page.get_by_role("tab", name="Metadata").first.click()
        checks.expect("the run's metadata links its MLflow run", visible(page, "mlflow_run_url"))
        checks.expect("the run's metadata names the model version it registered", visible(page, "registered_model_version"))
        page.wait_for_timeout(4000)  # the DAG beside it is drawn
        page.screenshot(path=str(SHOTS / "zenml-run-metadata.png"))
    finally:
        dashboard.send_signal(signal.SIGINT)
        dashboard.wait(timeout=30)


def main() -> int:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("browser check: Playwright is missing: run scripts/browser_check.sh (it installs .[browser])")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        sys.exit(f"browser check: no Chromium at {chromium}: apt-get install chromium, or set CHROMIUM=PATH")
    home = state_home()
    uri = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    experiment, parent = latest_run(uri, os.environ.get("DCJT_EXPERIMENT", "dcjt-synthetic"))
    tags = parent.data.tags
    model, version = tags.get("registered_model"), tags.get("registered_version")
    port = free_port()
    ui = start_ui(uri, port)
    base = f"http://127.0.0.1:{port}/#"
    checks = Checks()
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})  # no stored UI preferences
            page = context.new_page()
            name = parent.info.run_name

            page.goto(f"{base}/experiments/{experiment}")  # MLflow 3.17 opens an experiment on its GenAI overview
            genai = visible(page, "Token Usage", timeout=15_000)
            print(f"note: a fresh browser opened the experiment page on {'the GenAI overview' if genai else 'its runs'}")
            page.goto(f"{base}/experiments/{experiment}/runs")  # what run.py prints: the training runs
            checks.expect("the runs link opens the training runs", visible(page, "Training runs"))
            checks.expect(f"the run's readable name {name[:28]}... is listed", visible(page, name[:20]))
            close_assistant(page)
            checks.expect("row.test_accuracy can be shown as a column and the rows expanded", show_rows(page, name))
            page.screenshot(path=str(SHOTS / "ui-runs-table.png"))
            page.goto(f"{base}/experiments/{experiment}/runs/{parent.info.run_id}")
            checks.expect("the pipeline run's description is the comparison table", visible(page, "Rows of this run"))
            checks.expect("the table is rendered (a cell for the dcjt row)", visible(page, "target_only"))
            checks.expect("the registry's verdict is in the description", visible(page, "Registry:"))
            close_assistant(page)
            more = page.get_by_text("Show more", exact=True)
            if more.count():  # the UI folds a long description
                more.first.click()
            page.get_by_text("Rows of this run").first.scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "ui-run-description.png"))

            if model and version:
                page.goto(f"{base}/models/{model}/versions/{version}")
                checks.expect("the version's page shows its run's baselines", visible(page, "Rows of the same run"))
                checks.expect("the version's page shows per-emotion quality", visible(page, "Per emotion on the test split"))
                checks.expect("the per-emotion tags are on the version", visible(page, "test.f1.anger"))
                close_assistant(page)
                page.screenshot(path=str(SHOTS / "ui-model-version.png"))
                opened = False
                try:
                    with context.expect_page(timeout=10_000) as tab:  # the UI opens description links in a new tab
                        page.get_by_role("link", name="model_card.md").first.click()
                    opened = visible(tab.value, "Intended use and limits")
                except Exception:
                    pass
                checks.expect("the model card link opens the card", opened)
            else:
                checks.expect(f"run {name} registered a version", False)
            zenml_checks(checks, context, tags.get("zenml.run_id"), tags.get("zenml.run_name", name))
            browser.close()
    finally:
        ui.terminate()
        ui.wait(timeout=30)
    print(f"screenshots: {SHOTS}/ui-*.png, {SHOTS}/zenml-*.png")
    print(f"browser_check_failures: {len(checks.failed)}")
    return len(checks.failed)


if __name__ == "__main__":
    sys.exit(main())
