"""Sources: raw media cut into items, one task per stage per item (M9).

An item is a small JSON description of where its data is (a file and a frame range, a
chunk of text inline), never the pixels themselves: ingress messages stay small and the
worker reads the media where it lies. A live stream is read as it plays and spooled into
segment files, so it becomes the same kind of item as a video file. Workers on other
hosts need the files on a shared path (`--spool` on shared storage for streams).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from corral.pipelines.spec import Source, SpecError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt", ".md", ".csv", ".jsonl", ".log")


def files(pattern: str, suffixes: tuple[str, ...]) -> list[Path]:
    """A file, every matching file of a directory, or a glob; sorted, so runs repeat."""
    path = Path(pattern)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.suffix.lower() in suffixes]
    elif path.is_file():
        found = [path]
    else:
        found = [Path(p) for p in glob.glob(pattern) if Path(p).is_file()]
    if not found:
        raise SpecError(f"source path {pattern!r} matches no file ({', '.join(suffixes)})")
    return sorted(p.resolve() for p in found)


def items(source: Source, spool: Path | None = None) -> Iterator[dict[str, Any]]:
    """The items of a source, in order; each has `frames` (how many frames or lines it holds)."""
    if source.kind == "text":
        yield from _text(source)
    elif source.kind == "images":
        paths = [str(p) for p in files(source.path, IMAGE_SUFFIXES)]
        for i in range(0, len(paths), source.segment):
            chunk = paths[i : i + source.segment]
            yield {"kind": "images", "paths": chunk, "first": i, "frames": len(chunk)}
    elif source.kind == "video":
        for path in files(source.path, (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mjpeg", ".mpg")):
            yield from _video(path, source.segment)
    else:
        yield from _stream(source, spool or Path(".corral/spool"))


def _text(source: Source) -> Iterator[dict[str, Any]]:
    for path in files(source.path, TEXT_SUFFIXES):
        with path.open(encoding="utf-8", errors="replace") as f:
            lines: list[str] = []
            first = 0
            for number, line in enumerate(f):
                lines.append(line.rstrip("\n"))
                if len(lines) == source.segment:
                    yield {"kind": "text", "path": str(path), "first": first, "lines": lines,
                           "frames": len(lines)}
                    lines, first = [], number + 1
            if lines:
                yield {"kind": "text", "path": str(path), "first": first, "lines": lines,
                       "frames": len(lines)}


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise SpecError("video sources need OpenCV: pip install 'corral[media]'") from None
    return cv2


def _video(path: Path, segment: int) -> Iterator[dict[str, Any]]:
    cv2 = _cv2()
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SpecError(f"cannot open video {path} (unsupported codec or not a video)")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    capture.release()
    if total <= 0:
        raise SpecError(f"video {path} reports no frames")
    for start in range(0, total, segment):
        count = min(segment, total - start)
        yield {"kind": "video", "path": str(path), "start": start, "count": count, "first": start,
               "fps": fps, "frames": count}


SPOOL_MARKER = ".corral-spool"  # in every directory a live stream is spooled into
SEGMENT_RE = re.compile(r"segment-[0-9]{9}\.avi")


def _stream(source: Source, spool: Path) -> Iterator[dict[str, Any]]:
    """Read a live stream as it plays; every `segment` frames become a spooled segment file."""
    cv2 = _cv2()
    capture = cv2.VideoCapture(source.path)
    if not capture.isOpened():
        raise SpecError(f"cannot open stream {source.path!r}")
    spool.mkdir(parents=True, exist_ok=True)
    (spool / SPOOL_MARKER).touch()
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
    seen, frames = 0, []
    try:
        while source.max_frames is None or seen < source.max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
            seen += 1
            if len(frames) == source.segment:
                yield _spool(cv2, spool, frames, seen - len(frames), fps)
                frames = []
        if frames:
            yield _spool(cv2, spool, frames, seen - len(frames), fps)
    finally:
        capture.release()


def spooled_segment(path: Any) -> Path | None:
    """The segment file a sink may delete once its rows are written, or None: only a
    `segment-<n>.avi` that is a plain file (no link) in a directory a stream was spooled
    into (it holds SPOOL_MARKER). Anything else named in a message is left alone."""
    if not isinstance(path, str) or not path:
        return None
    candidate = Path(path)
    if not SEGMENT_RE.fullmatch(candidate.name) or candidate.is_symlink() or not candidate.is_file():
        return None
    parent = candidate.parent
    if parent.resolve() != Path(os.path.realpath(candidate)).parent or not (parent / SPOOL_MARKER).is_file():
        return None
    return candidate


def _spool(cv2: Any, spool: Path, frames: list[Any], first: int, fps: float) -> dict[str, Any]:
    path = spool / f"segment-{first:09d}.avi"
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return {"kind": "video", "path": str(path.resolve()), "start": 0, "count": len(frames),
            "first": first, "fps": fps, "frames": len(frames), "spooled": True}
