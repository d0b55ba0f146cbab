"""What changes the machine for a measurement, kept apart from what describes it (host.py: the fingerprint and
how quiet the machine was). Each actuator is a context manager that restores what it changed."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CPU_LATENCY = Path("/dev/cpu_dma_latency")  # Linux PM QoS: the most wake-up latency any CPU may add (us)


def cpu_idle_problem() -> str:
    """Why the CPUs cannot be held out of idle states here ('' when they can): PM QoS needs write access."""
    if not CPU_LATENCY.exists():
        return f"{CPU_LATENCY} does not exist (Linux PM QoS is not available here)"
    if not os.access(CPU_LATENCY, os.W_OK):
        return f"{CPU_LATENCY} is not writable by this user (PM QoS requests need root)"
    return ""


@contextlib.contextmanager
def no_cpu_idle():
    """While held, no CPU enters an idle state that adds wake-up latency (a PM QoS request of 0 us, as tuned's
    latency-performance profile makes): an idle core polls instead of halting, so a sleeping thread wakes without
    the halted core's (on a VM, the hypervisor's) exit cost. Released when the file is closed."""
    fd = os.open(CPU_LATENCY, os.O_WRONLY)
    try:
        os.write(fd, (0).to_bytes(4, "little", signed=True))
        yield
    finally:
        os.close(fd)
