"""What every step shares: the cache policy, and the run-time knobs applied when a step starts.

ZenML's cache key covers a step's own source, parameters and inputs, not the code it calls.
Every step's policy therefore adds ``code_digest()``: a hash of the sources of the core package
(``dcjt/``) and of ``steps/``, computed when a key is computed (never at import), so a change in
any of them invalidates cached results. The MLflow parent run id is an input that the cache key
ignores (it changes every run; the work does not).

``runtime.threads`` and ``runtime.workers`` reach every step as environment variables (the
pipeline's ``environment``: in this process or in a step's container); ``apply_runtime`` runs when
each step starts, and the worker pools read them (``dcjt.utils.runtime``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from pathlib import Path

from zenml import step
from zenml.config.cache_policy import CachePolicy

from dcjt.utils.runtime import apply_threads


def _cache_package_lookup() -> None:
    """ZenML resolves every stored artifact's type to its distribution package through
    ``importlib.metadata.packages_distributions()``, which walks the file list of every installed
    package on each call (17 calls in a tiny run; uncached it took 52 s, cached 40 s:
    ``bench/step_overhead.py``).
    The installed packages do not change during a run, so the mapping is computed once per
    process (the same fix as huggingface/diffusers#11453)."""
    lookup = importlib.metadata.packages_distributions
    if not hasattr(lookup, "cache_info"):
        importlib.metadata.packages_distributions = functools.cache(lookup)


_cache_package_lookup()

REPO_ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("dcjt", "steps")
PARENT_RUN = "parent_run_id"


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """Hash of every Python source under ``CODE_FOLDERS`` (paths and contents)."""
    h = hashlib.sha256()
    for folder in CODE_FOLDERS:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            h.update(str(path.relative_to(REPO_ROOT)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def core_cache_policy() -> CachePolicy:
    return CachePolicy(cache_func="steps.common.code_digest", ignored_inputs=[PARENT_RUN])


def apply_runtime() -> None:
    """Every step's start hook: the run's CPU thread budget (``runtime.threads``)."""
    apply_threads()


def dcjt_step(*, cached: bool = True):
    """``zenml.step`` with the project's cache policy (or none) and the runtime start hook."""
    if cached:
        return step(cache_policy=core_cache_policy(), on_start=apply_runtime)
    return step(enable_cache=False, on_start=apply_runtime)
