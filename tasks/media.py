"""Algorithms for pipelines (M9): frames and text in, rows out.

Each reads its item where it lies (a video's frame range, image files, lines inline; see
pipelines/sources.py) and returns `{"rows": [...]}`, one row per finding, which a sink
writes. OpenCV is imported when first needed, so a worker without it still runs
everything else and says what to install.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from corral.tasks.context import Context
from corral.tasks.registry import algorithm


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise RuntimeError("this algorithm needs OpenCV on the worker: pip install 'corral[media]'") from None
    return cv2


def frames(item: dict[str, Any]) -> Iterator[tuple[int, Any]]:
    """(frame number within the source, BGR image) for each frame of a video or image item."""
    cv2 = _cv2()
    kind = item.get("kind")
    if kind == "images":
        for offset, path in enumerate(item["paths"]):
            image = cv2.imread(path)
            if image is None:
                raise ValueError(f"cannot read image {path}")
            yield int(item.get("first", 0)) + offset, image
        return
    if kind != "video":
        raise ValueError(f"item kind {kind!r} holds no frames (expected video or images)")
    capture = cv2.VideoCapture(item["path"])
    if not capture.isOpened():
        raise ValueError(f"cannot open video {item['path']}")
    try:
        start, count = int(item.get("start", 0)), int(item["count"])
        if start:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        first = int(item.get("first", start))
        for offset in range(count):
            ok, image = capture.read()
            if not ok:
                raise ValueError(f"video {item['path']} ended at frame {start + offset}, "
                                 f"before the {count} frames of this segment")
            yield first + offset, image
    finally:
        capture.release()


@algorithm("vision.bright")
def bright(args: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Per frame, the bright object: centroid and area of pixels above `threshold` (0-255)."""
    cv2 = _cv2()
    threshold = int(args.get("threshold", 128))
    rows = []
    for number, image in frames(args["item"]):
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        _, mask = cv2.threshold(gray, threshold, 255, cv2.THRESH_BINARY)
        m = cv2.moments(mask, binaryImage=True)
        area = int(m["m00"])
        rows.append({"frame": number, "area": area,
                     "x": round(m["m10"] / area, 2) if area else None,
                     "y": round(m["m01"] / area, 2) if area else None})
    return {"rows": rows}


def _cascade() -> Any:
    cv2 = _cv2()
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise RuntimeError("OpenCV's frontal-face Haar cascade is missing "
                           "(opencv-python-headless<5 ships it)")
    return cascade


@algorithm("vision.faces", setup=_cascade)
def faces(args: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Faces per frame (OpenCV's Haar cascade, loaded once per worker as its model)."""
    cv2 = _cv2()
    scale, neighbors = float(args.get("scale", 1.2)), int(args.get("neighbors", 5))
    rows = []
    for number, image in frames(args["item"]):
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        for x, y, w, h in ctx.state.detectMultiScale(gray, scale, neighbors):
            rows.append({"frame": number, "x": int(x), "y": int(y), "w": int(w), "h": int(h)})
    return {"rows": rows, "frames": int(args["item"].get("frames", 0))}


WORD = re.compile(r"\w+", re.UNICODE)


@algorithm("text.words")
def words(args: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Per line of a text item: its number, word count, characters and longest word."""
    item = args["item"]
    if item.get("kind") != "text":
        raise ValueError(f"text.words takes text items, got {item.get('kind')!r}")
    rows = []
    for offset, line in enumerate(item["lines"]):
        found = WORD.findall(line)
        rows.append({"line": int(item.get("first", 0)) + offset, "words": len(found), "chars": len(line),
                     "longest": max(found, key=len) if found else ""})
    return {"rows": rows}
