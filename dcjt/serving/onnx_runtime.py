"""The registered DCN as MLflow serves it: its ONNX graph under ONNX Runtime, no torch.

The graph (``dcjt.serving.export``) takes uint8 NHWC images of the network's size and returns
class probabilities and valence/arousal: ImageNet normalisation and softmax are inside it, so the
only preprocessing outside is the decode / crop / resize that training uses too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from dcjt.serving.inputs import input_items, predict_inputs

ONNX_FILE, SPEC_FILE = "model.onnx", "spec.json"
INPUT_NAME, OUTPUT_NAMES = "images", ("probabilities", "valence_arousal")
THREADS_ENV = "DCJT_SERVE_THREADS"


class OnnxScorer:
    """uint8 NHWC batch -> (probabilities, valence/arousal) under ONNX Runtime on the CPU.
    ``threads``: ONNX Runtime's intra-op threads (default ``DCJT_SERVE_THREADS``, else its own)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        # ONNX Runtime's telemetry (its 1DS SDK) writes a session file to TMPDIR on first use;
        # a served model phones nowhere and leaves nothing behind.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        import onnxruntime as ort

        options = ort.SessionOptions()
        threads = threads or int(os.environ.get(THREADS_ENV) or 0)
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape  # ["batch", size, size, 3]
        self.image_size = int(shape[1])

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, va = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(images, dtype=np.uint8)})
        return probs, va


class DCNOnnxPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the network's ONNX graph and its spec; predicts on paths, image bytes or arrays."""

    def load_context(self, context) -> None:
        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.scorer = OnnxScorer(context.artifacts["onnx"])
        self.min_side = int(spec.get("min_side") or max(1, spec["image_size"] // 4))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return predict_inputs(self.scorer, input_items(model_input), self.min_side)
