"""OCR with PP-OCRv4 through RapidOCR's ONNX models (`rapidocr-onnxruntime` ships them, so
nothing is downloaded): `vision.ocr` reads text in images, `vision.textdet` finds where
text is in video frames (the same text detector, a neural network, without recognition).

Chosen for the detector: the text detector that ships inside the OCR wheel (a DBNet, 4.7 MB
of ONNX) loads with no network, runs on ONNX Runtime (its CUDA provider when one is
installed, else the CPU), and finds something real in real frames; the face detector of
OpenCV's wheel is a Haar cascade, not a neural network. The models load once per worker
(`setup`); the device is recorded in every row. Both are batch-capable: a call takes up to
8 items, every frame of which goes through the model in turn (RapidOCR takes one image at a
time; a call still saves a message and a round trip per item).
Registered only where `rapidocr_onnxruntime` and `onnxruntime` are installed (README).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from corral.tasks.context import Context
from corral.tasks.media import frames
from corral.tasks.registry import algorithm


def available() -> bool:
    needed = ("rapidocr_onnxruntime", "onnxruntime", "cv2")
    return all(importlib.util.find_spec(m) is not None for m in needed)


class Engine:
    """RapidOCR on the GPU when ONNX Runtime can use one, else on the CPU."""

    def __init__(self) -> None:
        import onnxruntime
        from rapidocr_onnxruntime import RapidOCR

        cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        self.device = "cuda" if cuda else "cpu"
        self.ocr = RapidOCR(det_use_cuda=cuda, cls_use_cuda=cuda, rec_use_cuda=cuda)

    def read(self, image: Any) -> list[dict[str, Any]]:
        """(text, box, score) of each line of text in a BGR image, top to bottom."""
        found, _ = self.ocr(image)
        return [{"text": text, "box": [[round(float(x), 1), round(float(y), 1)] for x, y in box],
                 "score": round(float(score), 4)} for box, text, score in found or ()]

    def detect(self, image: Any) -> list[dict[str, Any]]:
        """The bounding rectangle of each text region of a BGR image."""
        found, _ = self.ocr(image, use_det=True, use_cls=False, use_rec=False)
        out = []
        for box in found or ():
            xs, ys = [float(p[0]) for p in box], [float(p[1]) for p in box]
            out.append({"x": round(min(xs), 1), "y": round(min(ys), 1),
                        "w": round(max(xs) - min(xs), 1), "h": round(max(ys) - min(ys), 1)})
        return out


def ocr(inputs: list[Any], ctx: Context) -> list[dict[str, Any]]:
    engine: Engine = ctx.state
    return [{"rows": [{"frame": number, "line": i, **found, "device": engine.device}
                      for number, image in frames(_item(one))
                      for i, found in enumerate(engine.read(image))]} for one in inputs]


def textdet(inputs: list[Any], ctx: Context) -> list[dict[str, Any]]:
    engine: Engine = ctx.state
    return [{"rows": [{"frame": number, "region": i, **found, "device": engine.device}
                      for number, image in frames(_item(one))
                      for i, found in enumerate(engine.detect(image))]} for one in inputs]


def _item(one: Any) -> dict[str, Any]:
    item = one.get("item") if isinstance(one, dict) else None
    if not isinstance(item, dict) or item.get("kind") not in ("images", "video"):
        raise ValueError("takes a pipeline item of images or video frames")
    return item


if available():
    algorithm("vision.ocr", setup=Engine, batch=8)(ocr)
    algorithm("vision.textdet", setup=Engine, batch=8)(textdet)
