"""Synthetic test media with a known answer: a bright disc crossing a dark frame.

Frame i shows the disc centred at x = margin + step * i, so `vision.bright` must find
exactly that: tests, the fps benchmark and the example pipeline use it without
shipping video files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def disc_x(frame: int, width: int = 320, radius: int = 12) -> int:
    span = width - 4 * radius
    return 2 * radius + (frame * 3) % span


def write_clip(path: str | Path, frames: int = 200, width: int = 320, height: int = 240,
               fps: float = 25.0, radius: int = 12) -> Path:
    """An MJPG AVI (the codec OpenCV's wheel writes everywhere)."""
    import cv2
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for i in range(frames):
        image = np.full((height, width, 3), 20, np.uint8)
        cv2.circle(image, (disc_x(i, width, radius), height // 2), radius, (255, 255, 255), -1)
        writer.write(image)
    writer.release()
    return path


def tracking_pipeline(clip: str | Path, db: str | Path, segment: int = 50, name: str = "bright",
                      session: dict[str, Any] | None = None) -> Any:
    """The pipeline the demo and the fps benchmark run on such a clip: the bright object and
    faces per frame, one row per frame (from `track`) into SQLite table `frames`."""
    from corral.pipelines.spec import parse

    return parse({
        "name": name, "session": session or {"name": "video"},
        "source": {"kind": "video", "path": str(clip), "segment": segment},
        "stages": [{"name": "track", "algorithm": "vision.bright"},
                   {"name": "faces", "algorithm": "vision.faces"}],
        "sink": {"kind": "sql", "url": f"sqlite:///{db}", "table": "frames", "from": ["track"],
                 "columns": {"frame": "integer", "x": "float", "y": "float"}},
    })


if __name__ == "__main__":
    import sys

    print(write_clip(sys.argv[1] if len(sys.argv) > 1 else "clip.avi",
                     int(sys.argv[2]) if len(sys.argv) > 2 else 200))
