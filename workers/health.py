"""GPU health signals for the node agent: NVML (Xid events, double-bit ECC) or, for
simulated GPUs, a fault file that tests and drills write.

A signal quarantines the GPU at once: the agent reports it in its registration as
`gpu_faults: {index: reason}` and the leader acts on it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from corral.workers.gpus import GpuInfo

log = logging.getLogger("corral.health")

# Xids that mean the GPU (not the program) is in trouble; see NVIDIA's Xid catalogue.
CRITICAL_XIDS = {48: "double-bit ECC error", 63: "ECC page retirement failure",
                 64: "ECC page retirement failure", 74: "NVLink error",
                 79: "GPU has fallen off the bus", 92: "high single-bit ECC rate",
                 94: "contained ECC error", 95: "uncontained ECC error"}


class HealthMonitor:
    def __init__(self, gpus: list[GpuInfo], fault_file: Path | None = None) -> None:
        self.gpus = gpus
        self.fault_file = fault_file
        self.faults: dict[int, str] = {}
        self._nvml: Any = None
        self._events: Any = None
        self._handles: dict[int, Any] = {}
        if any(not g.simulated for g in gpus):
            self._open_nvml()

    def _open_nvml(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._events = pynvml.nvmlEventSetCreate()
            for g in self.gpus:
                if g.simulated:
                    continue
                handle = pynvml.nvmlDeviceGetHandleByIndex(g.index)
                self._handles[g.index] = handle
                try:
                    pynvml.nvmlDeviceRegisterEvents(handle, pynvml.nvmlEventTypeXidCriticalError,
                                                    self._events)
                except pynvml.NVMLError as exc:
                    log.info("Xid events unavailable on GPU %d: %s", g.index, exc)
        except Exception as exc:
            log.warning("NVML health monitoring unavailable: %s", exc)
            self._nvml = None

    def poll(self) -> dict[int, str]:
        """Faults seen so far (they stick until the agent restarts)."""
        self._poll_file()
        if self._nvml is not None:
            self._poll_nvml()
        return dict(self.faults)

    def _poll_file(self) -> None:
        if self.fault_file is None or not self.fault_file.exists():
            return
        try:
            data = json.loads(self.fault_file.read_text() or "{}")
        except ValueError:
            return
        for index, reason in data.items():
            self.faults.setdefault(int(index), f"simulated NVML signal: {reason}")

    def _poll_nvml(self) -> None:
        nvml = self._nvml
        try:
            data = nvml.nvmlEventSetWait_v2(self._events, 0)
            xid = int(data.eventData)
            index = next((i for i, h in self._handles.items() if h == data.device), None)
            if index is not None and xid in CRITICAL_XIDS:
                self.faults.setdefault(index, f"Xid {xid}: {CRITICAL_XIDS[xid]}")
        except nvml.NVMLError:
            pass  # timeout: no event
        except Exception as exc:
            log.debug("Xid poll failed: %s", exc)
        for index, handle in self._handles.items():
            try:
                count = nvml.nvmlDeviceGetTotalEccErrors(
                    handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC)
            except Exception:
                continue  # ECC not supported or not enabled
            if count:
                self.faults.setdefault(index, f"{count} uncorrectable ECC error(s) (double-bit)")
