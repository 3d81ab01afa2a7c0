"""How an image cache travels from the step that builds it to the steps that read it.

``paths.handoff``:

- ``shared_disk`` (default; the local orchestrator, Kubernetes with the shared volume): the
  artifact is the cache's path; every step opens the same file.
- ``artifact_store`` (Kubeflow, or any stack whose steps share no disk): the cache is built in
  the step's scratch folder and moved into the stack's artifact store with the artifact; a step
  that reads it restores it to its own scratch folder once per pod (the cache key names the
  pixels, so a local copy under that key is reused) and opens it there. Checkpoints stay on
  the pod's scratch disk (a retried pod starts its training over).

Scratch: ``DCJT_SCRATCH`` (default ``$DCJT_HOME/scratch``). ``DCJT_SCRATCH_PER_STEP=1`` gives
every step its own scratch folder, removed when the next step starts: the local orchestrator
then behaves like pods that share no disk (the tests run the pipeline so).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from dcjt.data.cache import CacheError, building, cache_gone, load_cache
from dcjt.utils.files import replace_atomic
from dcjt.utils.state import state_home


@dataclass(frozen=True)
class CacheRef:
    """An image cache handed between steps: where it is on this machine, and its key."""

    path: str  # the .npy file (its keys beside it as .json)
    handoff: str = "shared_disk"

    @property
    def key(self) -> str:
        return Path(self.path).stem


def _current_step() -> str | None:
    try:
        from zenml import get_step_context

        return get_step_context().step_run.name
    except Exception:  # outside a step (tests, scripts)
        return None


def scratch_dir() -> Path:
    """This pod's (or, with ``DCJT_SCRATCH_PER_STEP``, this step's) scratch folder."""
    root = Path(os.environ.get("DCJT_SCRATCH") or state_home() / "scratch")
    if os.environ.get("DCJT_SCRATCH_PER_STEP") != "1":
        return root
    step = _current_step() or "outside-steps"
    for other in root.glob("*") if root.is_dir() else ():
        if other.name != step:  # an earlier step's disk is gone, as on another pod
            shutil.rmtree(other, ignore_errors=True)
    return root / step


def folder_or_scratch(configured: str, name: str) -> Path:
    """A configured folder on the shared disk; none configured (``artifact_store``): ``name`` in
    this pod's scratch folder. The one rule for image caches and checkpoints."""
    return Path(configured) if configured else scratch_dir() / name


def world_folder(configured: str) -> Path:
    """Where the synthetic world's image files go: the configured folder on the shared disk; with
    no shared disk (``artifact_store``), a folder of the stack's artifact store, the one place
    every step reads. Its files are opened by path, so that store must be a local one (the
    local orchestrator's, or the folder ``local_docker`` mounts in every step's container)."""
    if configured:
        return Path(configured)
    from zenml.client import Client

    store = Client().active_stack.artifact_store
    if store.flavor != "local":
        raise RuntimeError(
            f"the synthetic world's images must be readable by every step: artifact store {store.name} is "
            f"{store.flavor}, not local; set paths.data_dir to a folder every step mounts (and paths.handoff=shared_disk)"
        )
    return Path(store.path) / "datasets" / "synthetic"


class CacheRefMaterializer(BaseMaterializer):
    """``shared_disk``: stores the path. ``artifact_store``: stores the cache itself (moved from
    the building step's scratch) and restores it to the reading step's scratch."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (CacheRef,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA
    REF = "cache_ref.json"

    def save(self, data: CacheRef) -> None:
        fileio.makedirs(self.uri)
        with fileio.open(os.path.join(self.uri, self.REF), "w") as f:
            f.write(json.dumps({"path": data.path, "handoff": data.handoff, "key": data.key}))
        if data.handoff == "shared_disk":
            return
        local = Path(data.path)
        for src in (local.with_suffix(".json"), local):  # data last: its presence means complete
            dst = os.path.join(self.uri, "cache" + src.suffix)
            fileio.copy(str(src), dst, overwrite=True)
        local.unlink()  # the building step's copy is gone: no later step can use it by path
        local.with_suffix(".json").unlink()

    def load(self, data_type: type[Any]) -> CacheRef:
        with fileio.open(os.path.join(self.uri, self.REF), "r") as f:
            ref = json.loads(f.read())
        if ref["handoff"] == "shared_disk":
            if not Path(ref["path"]).is_file():
                raise cache_gone(ref["path"])
            return CacheRef(ref["path"])
        return CacheRef(str(self._restore(ref["key"])), "artifact_store")

    def _restore(self, key: str) -> Path:
        """The cache in this pod's scratch: reused when a valid copy under its key is there."""
        folder = scratch_dir() / "cache"
        local = folder / f"{key}.npy"
        with building(folder):
            try:
                load_cache(local)
                return local
            except CacheError:
                pass
            for suffix in (".json", ".npy"):  # data last: both present means complete
                source = os.path.join(self.uri, "cache" + suffix)
                replace_atomic(
                    lambda tmp, source=source: fileio.copy(source, str(tmp), overwrite=True), local.with_suffix(suffix)
                )
        load_cache(local)  # checked: the copy is complete and matches its keys
        return local
