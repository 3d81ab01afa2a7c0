"""Screenshot the MLflow UI comparing the pipeline runs of an experiment (for docs/).

Docs tooling, not a project dependency: needs Playwright's Python package and a Chromium
(Debian: ``apt-get install chromium``; ``python3 -m venv /tmp/pw && /tmp/pw/bin/pip install
playwright``). Start the UI first (``.venv/bin/python -m mlflow ui --backend-store-uri
sqlite:///$PWD/state/mlflow.db --port 5055``), then::

    /tmp/pw/bin/python scripts/ui_screenshot.py http://127.0.0.1:5055 1 docs/images/mlflow-compare-runs.png
"""

from __future__ import annotations

import sys

from playwright.sync_api import sync_playwright


def main(base: str, experiment_id: str, out: str, metric_filter: str = "test_accuracy") -> None:
    url = f"{base}/#/experiments/{experiment_id}/runs?compareRunsMode=CHART"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(url)
        page.wait_for_timeout(6000)
        page.get_by_text("Model training", exact=True).first.click()  # the classic training-runs view
        page.goto(url)
        page.wait_for_timeout(6000)
        assistant = page.locator("button[aria-label*='lose']")  # the side assistant panel, if it opened
        if assistant.count():
            assistant.last.click()
        page.get_by_placeholder("Search metric charts").fill(metric_filter)
        page.wait_for_timeout(2000)
        page.screenshot(path=out)
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
