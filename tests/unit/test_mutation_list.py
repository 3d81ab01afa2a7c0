"""The curated mutants of scripts/mutation.py still apply to the code (the full check is slow and
runs outside CI; this keeps its list from going stale silently)."""

from __future__ import annotations

import importlib.util
import sys

from helpers import ROOT  # noqa: E402


def test_every_mutant_applies_once_and_names_existing_tests():
    spec = importlib.util.spec_from_file_location("mutation", ROOT / "scripts" / "mutation.py")
    mutation = importlib.util.module_from_spec(spec)
    sys.modules["mutation"] = mutation  # dataclasses look their module up there
    spec.loader.exec_module(mutation)
    assert len(mutation.MUTANTS) >= 25 and len({m.name for m in mutation.MUTANTS}) == len(mutation.MUTANTS)
    for m in mutation.MUTANTS:
        assert (ROOT / m.path).read_text().count(m.old) == 1, m.name
        assert m.old != m.new and (ROOT / m.tests[0]).is_file(), m.name
