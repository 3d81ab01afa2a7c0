"""What the test lanes share: tiny datasets and models, the tiny pipeline run, a registry on a
temporary store, local servers. Imported as ``helpers.*`` (``tests`` is on the test path)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
