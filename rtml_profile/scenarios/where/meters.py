"""Energy and clock counters: RAPL on the CPU host (where /sys/class/powercap is readable), NVML on GPUs.

Each meter returns a reading or None with the reason it is unavailable; a missing counter is never a zero.
"""

from __future__ import annotations

from pathlib import Path

RAPL = Path("/sys/class/powercap")


def rapl_uj() -> tuple[float | None, str]:
    """Package energy in microjoules summed over the RAPL package domains, or (None, why not)."""
    if not RAPL.is_dir():
        return None, f"{RAPL} does not exist (no RAPL interface exposed to this machine, e.g. a VM)"
    total, found = 0.0, 0
    for d in sorted(RAPL.glob("*rapl:[0-9]")):
        try:
            total += float((d / "energy_uj").read_text())
            found += 1
        except (OSError, ValueError) as e:
            return None, f"{d / 'energy_uj'} is not readable ({type(e).__name__}; reading RAPL often needs root)"
    return (total, "") if found else (None, f"no package domain (*rapl:N) under {RAPL}")


def nvml_state() -> tuple[dict | None, str]:
    """First GPU's energy counter (mJ), SM clock (MHz) and throttle-reason bitmask from NVML, or (None, why)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as e:
        return None, f"NVML is not available ({type(e).__name__}: {e})"
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        out = {"sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
               "throttle_reasons": pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)}  # fmt: skip
        try:
            out["energy_mj"] = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)  # Volta and newer
        except pynvml.NVMLError as e:
            out["energy_reason"] = f"this GPU exposes no energy counter ({e})"
        return out, ""
    except Exception as e:
        return None, f"NVML could not read the GPU ({type(e).__name__}: {e})"
    finally:
        pynvml.nvmlShutdown()


class Energy:
    """Energy over a block of calls on `device` ("cpu": RAPL, "cuda": NVML); .result(calls) after the block."""

    def __init__(self, device: str):
        self.device = device
        self.start, self.reason = rapl_uj() if device == "cpu" else self._nvml()

    def _nvml(self):
        state, why = nvml_state()
        if state is None or "energy_mj" not in state:
            return None, why or state.get("energy_reason", "")
        self.clock0 = state["sm_clock_mhz"]
        return state["energy_mj"] * 1e3, ""

    def result(self, calls: int) -> dict:
        if self.start is None:
            return {"energy": "not available", "energy_reason": self.reason}
        end, why = rapl_uj() if self.device == "cpu" else self._nvml()
        if end is None:
            return {"energy": "not available", "energy_reason": why}
        out = {
            "energy_j_per_call": (end - self.start) / 1e6 / calls,
            "energy_source": "RAPL" if self.device == "cpu" else "NVML",
        }
        if self.device != "cpu":
            state = nvml_state()[0] or {}
            out["sm_clock_mhz"] = [self.clock0, state.get("sm_clock_mhz")]
            out["throttle_reasons"] = state.get("throttle_reasons")
            if state.get("sm_clock_mhz") != self.clock0:
                out["warning"] = "the GPU's SM clock moved during the calls"
        return out
