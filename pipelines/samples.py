"""Real sample media for the OCR examples, from scikit-image's data (in its wheel: no
download): a scanned page and a photographed text, as PNG files, and a video that pans
across the page (real text, moving).

    python -m corral.pipelines.samples pipelines/examples/images pipelines/examples/page.avi
"""

from __future__ import annotations

import sys
from pathlib import Path

IMAGES = ("page", "text")  # skimage.data functions whose images hold text


def write_images(folder: str | Path) -> list[Path]:
    import cv2
    import skimage.data

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in IMAGES:
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), getattr(skimage.data, name)())
        out.append(path)
    return out


def write_page_video(path: str | Path, frames: int = 40, width: int = 320, height: int = 200,
                     fps: float = 10.0) -> Path:
    """An MJPG AVI: a window sliding down and across the page, scaled up twice."""
    import cv2
    import skimage.data

    page = cv2.resize(skimage.data.page(), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    page = cv2.cvtColor(page, cv2.COLOR_GRAY2BGR)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    dx, dy = page.shape[1] - width, page.shape[0] - height
    for i in range(frames):
        x, y = dx * i // max(frames - 1, 1), dy * i // max(frames - 1, 1)
        writer.write(page[y:y + height, x:x + width])
    writer.release()
    return path


if __name__ == "__main__":
    write_images(sys.argv[1] if len(sys.argv) > 1 else "images")
    write_page_video(sys.argv[2] if len(sys.argv) > 2 else "page.avi")
