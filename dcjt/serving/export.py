"""The network as an ONNX graph for serving without torch, and the check that it answers as the
torch network does.

The graph takes what the served model has after decoding and resizing: uint8 images, NHWC, of the
network's size, any batch size. ImageNet normalisation, the softmax and the clip of valence /
arousal to [-1, 1] are inside it, exactly as ``dcjt.models.inference.forward_uint8`` and
``dcjt.serving.inputs.predict_arrays`` do them in torch. Exported with PyTorch's exporter
(``torch.onnx.export(dynamo=True)``), checked by ``onnx.checker`` and then by parity: on a fixed
set of images the graph's probabilities must match the torch network's (float32, CPU) within
``atol`` and its argmax must agree on every image (a tie within ``atol`` excepted).

Tracing is most of the exporter's cost (about 2 s for any network), and the traced graph of a
network shape does not depend on its weights: it is traced once a process before any optimisation
(every weight an initializer under its state-dict name), and each export writes its network's
weights into that graph and then runs the exporter's optimisation (constant folding, which folds
batch norm into the convolutions, and fusions: without it ONNX Runtime served the demo's network
2.5 times slower). A process that registers or exports many versions (``export-onnx`` over old
versions, the promotion tests) traces once; every export is parity-checked either way.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dcjt.models.emotions import NUM_CLASSES
from dcjt.models.inference import normalise
from dcjt.serving.network import TorchScorer
from dcjt.serving.onnx_runtime import INPUT_NAME, OUTPUT_NAMES, OnnxScorer

OPSET = 18
PARITY_ATOL = 1e-4  # max |p_onnx - p_torch| over the parity images; measured: under 1e-6 (tiny net, ResNet-18)


class ServingExportError(ValueError):
    """The ONNX graph cannot be made, fails the checker, or does not answer as the torch network."""


class ServedGraph(torch.nn.Module):
    """What the ONNX file computes: uint8 NHWC -> (probabilities, valence/arousal in [-1, 1])."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(normalise(images))
        return torch.softmax(out[:, :NUM_CLASSES], dim=1), out[:, NUM_CLASSES:].clamp(-1, 1)


@dataclass(frozen=True)
class Export:
    path: Path
    opset: int
    size_bytes: int


def cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The network in eval mode on the CPU in float32, leaving the caller's model as it was."""
    return copy.deepcopy(model).float().cpu().eval()


TRACED_KEPT = 4  # traced graphs a process keeps (a ResNet-18's is about 45 MB)
_traced: OrderedDict[tuple, bytes] = OrderedDict()


def export_onnx(model: torch.nn.Module, path: Path) -> Export:
    """Write ``model`` as an ONNX graph (opset ``OPSET``, dynamic batch axis, weights inside the
    file) and run ``onnx.checker`` on it."""
    import onnx
    import onnx_ir  # onnxscript's graph representation, which torch.onnx's ONNXProgram holds

    net = cpu_copy(model)
    served = ServedGraph(net).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        graph = onnx.ModelProto.FromString(_traced_graph(served))
        _write_weights(graph, served.state_dict())
        program = torch.onnx.ONNXProgram(onnx_ir.from_proto(graph), None)
        with _quiet_exporter():
            program.optimize()  # the exporter's own pass (constant folding, fusions), on these weights
            program.save(str(path), external_data=False)
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ServingExportError(f"ONNX export of the {net.spec()} network failed: {type(exc).__name__}: {exc}"[:600]) from exc
    return Export(path=path, opset=OPSET, size_bytes=path.stat().st_size)


def _shape_of(served: ServedGraph) -> tuple:
    """What the traced graph depends on: the network's spec and every tensor's name, shape and dtype."""
    state = tuple((name, tuple(t.shape), str(t.dtype)) for name, t in served.state_dict().items())
    return (tuple(sorted(served.net.spec().items())), OPSET, torch.__version__, state)


def _traced_graph(served: ServedGraph) -> bytes:
    """The serialised ONNX graph of ``served``'s shape (traced on first use in this process)."""
    key = _shape_of(served)
    if key in _traced:
        _traced.move_to_end(key)
        return _traced[key]
    size = served.net.image_size
    with _quiet_exporter():
        program = torch.onnx.export(
            served,
            (torch.zeros(2, size, size, 3, dtype=torch.uint8),),
            dynamo=True,
            optimize=False,  # optimised per export, after _write_weights: folding would bake these weights in
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False,
            verbose=False,
        )
    _traced[key] = program.model_proto.SerializeToString()
    while len(_traced) > TRACED_KEPT:
        _traced.popitem(last=False)
    return _traced[key]


def _write_weights(graph, state: dict[str, torch.Tensor]) -> None:
    """Set each initializer named after a state-dict entry to that entry's values. The others are
    constants of the forward pass (the normalisation's mean and std), the same for any weights;
    a weight without its initializer would keep a traced value, so it is refused."""
    from onnx import numpy_helper

    names = {init.name for init in graph.graph.initializer}
    unused = [n for n in state if n not in names and not n.endswith("num_batches_tracked")]
    if unused:
        raise ValueError(f"the traced graph has no initializer for {unused[:3]}")
    for init in graph.graph.initializer:
        if init.name in state:
            init.CopyFrom(numpy_helper.from_array(state[init.name].detach().numpy(), init.name))


EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter prints its progress to stdout, warns about tracing and logs each graph pass at
    INFO (shown wherever the root logger is at INFO, as in a ZenML step); a run's console is not for that."""
    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@dataclass(frozen=True)
class Parity:
    """How the ONNX graph's probabilities compare with the torch network's on the parity images."""

    images: int
    max_abs_diff: float
    worst: str
    argmax_disagreements: list[str]
    atol: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol and not self.argmax_disagreements

    def problem(self) -> str:
        """The failure in one line, naming the worst image."""
        if self.argmax_disagreements:
            names = ", ".join(self.argmax_disagreements[:3])
            return (
                f"ONNX parity: the ONNX graph's class differs from torch's on {len(self.argmax_disagreements)} of "
                f"{self.images} images (first: {names}); max probability difference {self.max_abs_diff:.2e} at {self.worst}"
            )
        return (
            f"ONNX parity: probabilities differ by {self.max_abs_diff:.2e} at {self.worst}, over the tolerance "
            f"{self.atol:.0e} ({self.images} images)"
        )


def parity(model: torch.nn.Module, onnx_path: Path, images: np.ndarray, names: list[str], atol: float = PARITY_ATOL) -> Parity:
    """Compare the ONNX graph with the torch network (float32, CPU) on preprocessed uint8 ``images``
    named ``names``. An argmax disagreement counts unless torch's top two are within ``atol``."""
    torch_probs, _ = TorchScorer(cpu_copy(model))(images)
    onnx_probs, _ = OnnxScorer(onnx_path)(images)
    diff = np.abs(onnx_probs - torch_probs).max(axis=1)
    worst = int(diff.argmax())
    top2 = np.sort(torch_probs, axis=1)[:, -2:]
    tie = (top2[:, 1] - top2[:, 0]) <= atol
    disagree = (onnx_probs.argmax(1) != torch_probs.argmax(1)) & ~tie
    return Parity(
        images=len(images),
        max_abs_diff=float(diff[worst]),
        worst=names[worst],
        argmax_disagreements=[names[i] for i in np.flatnonzero(disagree)],
        atol=atol,
    )


def export_checked(model: torch.nn.Module, path: Path, images: np.ndarray, names: list[str], atol: float = PARITY_ATOL):
    """Export, check and compare; (Export, Parity) or ``ServingExportError`` in one line."""
    exported = export_onnx(model, path)
    result = parity(model, path, images, names, atol)
    if not result.passed:
        raise ServingExportError(result.problem())
    return exported, result
