"""Multi-GPU training with PyTorch's DistributedDataParallel, launched by torch.multiprocessing.

``run_distributed(fn, nprocs, **kwargs)`` starts ``nprocs`` processes (one per GPU with NCCL, or
CPU processes with gloo), runs ``fn(**kwargs)`` in each inside a process group, and returns what
rank 0 returned: tensors and plain types only (it is read back with ``weights_only=True``);
``train_distributed`` carries a training result that way. ``dcjt.train.loop.train`` notices the
process group: each process takes its share
of every batch (same augmentation draws as one process), gradients are averaged by DDP, BatchNorm
is synchronised on GPUs, and only rank 0 evaluates and writes checkpoints.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dcjt.config import NetworkConfig, TrainConfig
from dcjt.utils.runtime import apply_threads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn, kwargs: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    apply_threads()  # the run's thread budget (runtime.threads), inherited through the environment
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        result = fn(**kwargs)
        if rank == 0:
            torch.save(result, out)
        dist.barrier()  # no rank tears the group down while another is still joining or saving
    finally:
        dist.destroy_process_group()


def run_distributed(fn, nprocs: int, **kwargs):
    """Run ``fn(**kwargs)`` in ``nprocs`` DDP processes; return rank 0's result."""
    if nprocs < 2:
        return fn(**kwargs)
    if torch.cuda.is_available() and torch.cuda.device_count() < nprocs:
        raise ValueError(f"asked for {nprocs} GPU processes but this node has {torch.cuda.device_count()} GPUs")
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.pt")
        mp.spawn(_worker, args=(nprocs, _free_port(), fn, kwargs, out), nprocs=nprocs, join=True)
        # Written by rank 0 into this process's private temp folder; read without running any code.
        return torch.load(out, weights_only=True)


def train_job(
    *,
    network: NetworkConfig,
    train_cfg: TrainConfig,
    cache_paths: list[str],
    rows: dict,
    checkpoint_dir=None,
    on_epoch_end=None,
    desc: str = "train",
    warm_start: tuple[bytes, str] | None = None,
):
    """Open the image caches, build the network and train: what one process (or each DDP rank) runs.

    ``rows``: label tables by role: ``train``, and optionally ``val`` (selects the check), ``extra``
    (B's rows of the joint schedule) and ``curve`` (scored after every epoch as ``test_*`` metrics,
    never for selection). ``warm_start``: a warm-up's checkpoint and this training's key
    (``dcjt.train.warmup``; one process only): the training goes on from it when the keys agree,
    and its metrics say so (``warmup_branched``).
    """
    from dcjt.data.cache import load_cache
    from dcjt.models.nets import build_model
    from dcjt.train.batches import samples_from
    from dcjt.train.loop import Reporting, fingerprint_of, set_seed, train
    from dcjt.train.predict import evaluate
    from dcjt.train.weights import apply_weights

    caches = [load_cache(p) for p in cache_paths]
    s = lambda t: None if t is None or len(t) == 0 else samples_from(t, *caches)  # noqa: E731
    curve = s(rows.get("curve"))
    curve_hook = None
    if curve is not None:
        curve_hook = lambda model: {f"test_{k}": v for k, v in evaluate(model, curve, train_cfg.eval_batch_size).items()}  # noqa: E731
    set_seed(train_cfg.seed)
    model = build_model(network.backbone, network.head, network.image_size, scn=train_cfg.scn.enabled)
    model = apply_weights(model, network.weights)
    train_a, extra = s(rows["train"]), s(rows.get("extra"))
    shared = branched = None
    if warm_start is not None and checkpoint_dir is not None:
        from dcjt.train.warmup import branch, shares

        branched = branch(checkpoint_dir, *warm_start, fingerprint_of(train_cfg, model, train_a, extra))
        shared = branched or shares(*warm_start)  # a branch checked the key: the warm-up is read again only if not
    result = train(
        model,
        train_a,
        cfg=train_cfg,
        extra=extra,
        val=s(rows.get("val")),
        checkpoint_dir=checkpoint_dir,
        report=Reporting(desc, on_epoch_end, curve_hook),
    )
    if shared is not None:
        result.metrics["warmup_branched"] = int(branched)
        # of its steps, those the seed's warm-up trains for every row that shares it (counted once, by the
        # warm-up): by recipe, as ``steps`` counts a resumed run's history, so a row that went on from its own
        # checkpoint, or trained without its folder (a rung beside a later checkpoint), counts as a fresh one
        result.metrics["warmup_steps"] = int(result.history["steps"][: train_cfg.warmup_epochs].sum()) if shared else 0
    return result


def _portable(result) -> dict:
    """A ``TrainResult`` as tensors and plain types: what crosses from rank 0 to the caller."""
    return {
        "spec": result.model.spec(),
        "state": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "history": json.loads(result.history.to_json(orient="records")),
        "checks": json.loads(result.checks.to_json(orient="records")),
        "selected_epoch": int(result.selected_epoch),
        "metrics": json.loads(json.dumps(result.metrics, default=float)),
    }


def portable_train_job(**job) -> dict:
    """``train_job`` for a DDP rank: returns ``_portable`` data instead of objects."""
    return _portable(train_job(**job))


def train_distributed(devices: int, **job):
    """``train_job`` on ``devices`` DDP processes; the result is rebuilt from plain data."""
    import pandas as pd

    from dcjt.models.nets import build_model
    from dcjt.train.loop import TrainResult

    plain = run_distributed(portable_train_job, devices, **job)
    spec = plain["spec"]
    model = build_model(spec["backbone"], spec["head"], spec["image_size"], scn=spec.get("scn", False))
    model.load_state_dict(plain["state"])
    model.eval()
    history, checks = pd.DataFrame(plain["history"]), pd.DataFrame(plain["checks"])
    return TrainResult(
        model=model, history=history, selected_epoch=plain["selected_epoch"], metrics=plain["metrics"], checks=checks
    )
