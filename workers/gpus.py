"""GPU discovery and health through NVML, with a clearly labelled simulated fallback."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

log = logging.getLogger("corral.gpus")


@dataclass(frozen=True)
class GpuInfo:
    index: int
    uuid: str
    model: str
    memory_mb: int
    simulated: bool
    faulty: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def simulated(count: int, faulty: set[int] | frozenset[int] = frozenset()) -> list[GpuInfo]:
    return [
        GpuInfo(i, f"SIM-GPU-{i:04d}", "Simulated GPU (no NVML)", 81920, True, i in faulty)
        for i in range(count)
    ]


def nvml() -> list[GpuInfo]:
    """Real GPUs; an empty list when NVML is missing or finds none."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # no driver, no library, no GPU
        log.info("NVML unavailable (%s)", exc)
        return []
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(
                GpuInfo(
                    index=i,
                    uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                    model=name.decode() if isinstance(name, bytes) else str(name),
                    memory_mb=int(mem.total // (1024 * 1024)),
                    simulated=False,
                )
            )
        return out
    finally:
        pynvml.nvmlShutdown()


def discover(fake_gpus: int | None, faulty: set[int] | frozenset[int] = frozenset()) -> list[GpuInfo]:
    """`fake_gpus` forces simulation; otherwise NVML, falling back to 4 simulated GPUs."""
    if fake_gpus is not None:
        return simulated(fake_gpus, faulty)
    found = nvml()
    if found:
        return found
    log.warning("no NVIDIA GPU found through NVML: simulating 4 GPUs (labelled simulated)")
    return simulated(4, faulty)
