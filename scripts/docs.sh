#!/usr/bin/env bash
# Build the docs site (mkdocs, Material) into site/ after regenerating the reference pages from the
# code. --check (CI): fail when a generated page is stale or the build warns (a broken link, a
# missing page), building into a temporary folder.
set -euo pipefail
export NO_MKDOCS_2_WARNING=1   # Material prints an end-of-life banner otherwise
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "--check" ]; then
  .venv/bin/python -m scripts.docs --check
  .venv/bin/python -m scripts.docs --build-check mkdocs.yml   # strict, and no --quiet: any warning fails
  echo "docs: reference pages current, site builds without warnings"
else
  .venv/bin/python -m scripts.docs
  .venv/bin/mkdocs build --strict
  echo "docs: site/index.html (or: .venv/bin/mkdocs serve)"
fi
