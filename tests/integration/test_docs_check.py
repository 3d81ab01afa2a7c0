"""The docs check can fail: a broken link or an unknown anchor planted in a copy of the site stops
``scripts/docs.py --build-check`` (the strict build CI runs), and the site as committed passes."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from helpers import ROOT


def _check(config) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "scripts.docs", "--build-check", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize(
    "planted, named",
    [
        ("[gone](concepts/no-such-page.md)", "no-such-page.md"),
        ("[anchor](concepts/method.md#no-such-heading)", "no-such-heading"),
    ],
)
def test_the_docs_check_fails_on_a_planted_broken_link(tmp_path, planted, named):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + f"\n{planted}\n")
    proc = _check(tmp_path / "mkdocs.yml")
    assert proc.returncode != 0 and named in proc.stdout


def test_the_committed_site_passes_the_check():
    proc = _check(ROOT / "mkdocs.yml")
    assert proc.returncode == 0, proc.stdout
