"""The DCN as an MLflow pyfunc model: images in, label / emotion / probabilities / (V, A) out.

Input: a DataFrame with a column ``image`` (file paths) or ``image_bytes`` (encoded PNG/JPEG
bytes; ``encode_arrays`` turns uint8 arrays into them). Images are taken as face crops, resized to
the network's size and normalised as in training.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch

from dcjt.data.images import decode, preprocess
from dcjt.data.labels import EMOTIONS, NUM_CLASSES
from dcjt.inference import forward_uint8

OUTPUT_COLUMNS = ["label", "emotion", *[f"prob_{e}" for e in EMOTIONS], "valence", "arousal"]


def encode_arrays(arrays) -> pd.DataFrame:
    """uint8 HxWx3 arrays -> the model's ``image_bytes`` input (PNG)."""
    from PIL import Image

    out = []
    for a in arrays:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(a, dtype=np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return pd.DataFrame({"image_bytes": out})


def _decode_bytes(b: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(b)) as im:
        return np.asarray(im.convert("RGB"))


def predict_arrays(model: torch.nn.Module, images: list[np.ndarray], batch_size: int = 128) -> pd.DataFrame:
    """Run the network on RGB uint8 images of any size; one output row per image."""
    model.eval()
    probs, vas = [np.zeros((0, NUM_CLASSES))], [np.zeros((0, 2))]
    for i in range(0, len(images), batch_size):
        batch = np.stack([preprocess(img, model.image_size) for img in images[i : i + batch_size]])
        p, va = forward_uint8(model, batch)
        probs.append(p)
        vas.append(np.clip(va, -1, 1))
    p, va = np.concatenate(probs), np.concatenate(vas)
    label = p.argmax(1)
    frame = pd.DataFrame({"label": label.astype("int64"), "emotion": [EMOTIONS[k] for k in label]})
    for k, e in enumerate(EMOTIONS):
        frame[f"prob_{e}"] = p[:, k].astype("float64")
    frame["valence"], frame["arousal"] = va[:, 0].astype("float64"), va[:, 1].astype("float64")
    return frame


class DCNPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the network from its spec + weights artifacts; predicts on paths or image bytes."""

    def load_context(self, context) -> None:
        from dcjt.nets import build_model

        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.model = build_model(spec["backbone"], spec["head"], spec["image_size"])
        self.model.load_state_dict(torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True))
        self.model.eval()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if isinstance(model_input, np.ndarray):
            images = list(model_input) if model_input.ndim == 4 else [model_input]
        else:
            frame = pd.DataFrame(model_input)
            if "image" in frame and frame["image"].notna().all():
                images = [decode(p) for p in frame["image"]]
            elif "image_bytes" in frame:
                images = [_decode_bytes(b) for b in frame["image_bytes"]]
            else:
                raise ValueError("input needs a column 'image' (file paths) or 'image_bytes' (encoded images)")
        return predict_arrays(self.model, images)


def save_model_files(model: torch.nn.Module, folder: Path) -> dict[str, str]:
    """Write the spec and weights the pyfunc model loads; returns its ``artifacts`` mapping."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.json").write_text(json.dumps(model.spec()))
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, folder / "weights.pt")
    return {"spec": str(folder / "spec.json"), "weights": str(folder / "weights.pt")}
