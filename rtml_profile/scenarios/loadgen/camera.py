"""The periodic camera source: frames at fixed times, whatever the system under test is doing.

LoadGen has no fixed-period scenario (its MultiStream issues the next query when the last completes: a closed
loop), so this source is the toolkit's own. It drives the same system under test LoadGen drives (sut.SUT, in the
runtime's worker, on the same session, threads and idle-time settings; batching off, the call inline in the
source's thread as in LoadGen's inline SUT): only the schedule differs.

- Schedule: N cameras at F frames/s each, camera k shifted by k/(N F), so one frame every 1/(N F) s in all;
  with jitter J each frame comes U[0, J) later than its nominal time (seeded).
- Waiting: the source sleeps until SPIN_US before a frame's time, then spins on perf_counter_ns to it; its own
  issue error (actual issue minus scheduled) is recorded for every frame.
- Latency: from each frame's *scheduled* time to its host output being ready, so a frame that waits counts it.
- A frame due while the previous frame still runs queues (default: it runs as soon as the source is free, its
  wait in its latency) or, with drop_late, is dropped (counted, never run).
- Anticipatory warm-up (the source knows when the next frame comes): one call on a dummy input `lead` before
  each frame's nominal time, never counted as a frame; `auto` takes the lead from the cold call's own time
  (AUTO_FACTOR x the p90 of COLD_CALLS calls each after one frame gap idle, + AUTO_MARGIN_US), so the frame does
  not queue behind the warm-up; warm_spin holds the core awake (spinning) from the warm-up's end to the frame.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from rtml_profile import UserError, stats
from rtml_profile.scenarios.loadgen import sut

SPIN_US = 200.0  # the last stretch before a frame (or a warm-up) is spun, not slept
LEAD_IN_S = 0.05  # the first frame comes this long after the source starts
COLD_CALLS = 20  # auto warm-up lead: cold calls timed, each after one frame gap idle
AUTO_FACTOR, AUTO_MARGIN_US = 1.5, 200.0  # auto lead = AUTO_FACTOR x cold call p90 + AUTO_MARGIN_US
MAX_FRAMES = 2_000_000
MAX_SECONDS = 3600.0
ENGINE = "rtml-camera"  # the load rows' `engine` for this source (LoadGen's rows say mlperf-loadgen)


@dataclass(frozen=True)
class Periodic:
    """The camera scenario's own settings (the rate is Scenario.rate, frames/s per camera; cameras are
    Scenario.streams)."""

    jitter_us: float = 0.0  # each frame U[0, jitter) after its nominal time
    drop_late: bool = False  # a frame due while one runs is dropped (else it queues)
    warm_lead_us: float = 0.0  # a warm-up call this long before each frame (0: off)
    warm_auto: bool = False  # ... chosen from the cold call's own time
    warm_spin: bool = False  # ... and the core held awake (spinning) from the warm-up to the frame
    frames: int = 0  # frames in all (0: enough for a p99, or the run's duration, whichever is more)

    @property
    def warm(self) -> bool:
        return self.warm_auto or self.warm_lead_us > 0

    def text(self) -> str:
        """The settings text these add to a row's `settings` (part of the row's key)."""
        parts = [f"jitter {self.jitter_us:g} us"] if self.jitter_us else []
        parts += ["drop late"] if self.drop_late else []
        if self.warm:
            parts += [f"warm-lead {'auto' if self.warm_auto else f'{self.warm_lead_us:g} us'}"]
            parts += ["spin to frame"] if self.warm_spin else []
        return "; ".join(parts)

    def frame_count(self, fps: float, cameras: int, duration_s: float) -> int:
        if self.frames:
            return self.frames
        return max(stats.min_samples(99), math.ceil(duration_s * fps * cameras))

    def validate(self, fps: float, cameras: int, duration_s: float) -> Periodic:
        if not (fps > 0 and math.isfinite(fps)):
            raise UserError(f"--fps must be a positive number of frames per second, got {fps}")
        if cameras < 1:
            raise UserError(f"--cameras must be at least 1, got {cameras}")
        period, gap = 1e6 / fps, 1e6 / (fps * cameras)
        if not (0 <= self.jitter_us < period and math.isfinite(self.jitter_us)):
            raise UserError(f"--jitter must be at least 0 and shorter than the frame period ({period:.4g} us at "
                            f"{fps:g} fps), got {self.jitter_us:g} us")  # fmt: skip
        if not (0 <= self.warm_lead_us < gap and math.isfinite(self.warm_lead_us)):
            raise UserError(f"--warm-lead must be at least 0 and shorter than the gap between frames ({gap:.4g} us "
                            f"at {fps:g} fps x {cameras} cameras), got {self.warm_lead_us:g} us")  # fmt: skip
        if self.warm_spin and not self.warm:
            raise UserError("--warm-spin holds the core awake from the warm-up to the frame: it needs --warm-lead")
        if not 0 <= self.frames <= MAX_FRAMES:
            raise UserError(f"--frames must be between 1 and {MAX_FRAMES:,}, got {self.frames}")
        n = self.frame_count(fps, cameras, duration_s)
        if n / (fps * cameras) > MAX_SECONDS:
            raise UserError(f"{n} frames at {fps:g} fps x {cameras} cameras last over {MAX_SECONDS:g} s")
        return self


def schedule(fps: float, cameras: int, frames: int, jitter_us: float = 0.0, seed: int = 0):
    """(scheduled time in ns from the first nominal frame, camera, nominal time in ns) per frame, by scheduled
    time: frame j belongs to camera j mod N and is nominally due at j/(N F) (camera k shifted by k/(N F))."""
    j = np.arange(frames)
    nominal = j * (1e9 / (fps * cameras))
    jitter = np.random.default_rng(seed).uniform(0, jitter_us * 1e3, frames) if jitter_us else np.zeros(frames)
    at = nominal + jitter
    order = np.argsort(at, kind="stable")
    return at[order].astype(np.int64), (j % cameras)[order], nominal[order].astype(np.int64)


def wait_until(t_ns: int, spin_ns: int = int(SPIN_US * 1e3)) -> None:
    """Sleep until `spin_ns` before `t_ns` (perf_counter_ns), then spin to it."""
    while True:
        left = t_ns - time.perf_counter_ns()
        if left <= spin_ns:
            break
        time.sleep((left - spin_ns) / 1e9)
    while time.perf_counter_ns() < t_ns:
        pass


def cold_call_us(warm, sync, gap_ns: float, n: int = COLD_CALLS) -> float:
    """The cold call's own time: the p90 of `n` calls of `warm`, each after `gap_ns` idle (as a frame is)."""
    took = []
    for _ in range(n):
        time.sleep(gap_ns / 1e9)
        t0 = time.perf_counter_ns()
        warm()
        sync()
        took.append((time.perf_counter_ns() - t0) / 1e3)
    return stats.percentile(took, 90)


def run(calls: dict, sync, warm, fps: float, cameras: int, p: Periodic, frames: int, keepalive_ms: float = 0.0,
        seed: int = 0) -> dict:  # fmt: skip
    """One periodic run on the system under test (sut.SUT over `calls`; `warm` is the warm-up call on a dummy
    input). Returns {'arrays': per frame served, by scheduled time ('us' scheduled time to host output ready,
    'issue_us' actual minus scheduled issue, 'queued' due while the source was busy, 'arrival_s' scheduled time
    from the first frame, 'camera', 'frame' (its number in the schedule), 'call_us' the call, 'batch' 1,
    'wall_s'; 'dropped_s' the scheduled times of dropped frames; 'warm_us' each warm-up call), 'facts': the
    warm-up's lead, how it was chosen, and the counts}."""
    gap_ns = 1e9 / (fps * cameras)
    at, cam, nominal = schedule(fps, cameras, frames, p.jitter_us, seed)
    cold, lead_ns = None, int(p.warm_lead_us * 1e3)
    if p.warm_auto:
        cold = cold_call_us(warm, sync, gap_ns)
        lead_ns = int((AUTO_FACTOR * cold + AUTO_MARGIN_US) * 1e3)
        if lead_ns >= gap_ns:
            raise UserError(f"--warm-lead auto chose {lead_ns / 1e3:.4g} us ({AUTO_FACTOR:g} x the cold call's "
                            f"{cold:.4g} us + {AUTO_MARGIN_US:g}), not shorter than the gap between frames "
                            f"({gap_ns / 1e3:.4g} us)")  # fmt: skip
    served, issue, queued, dropped, warm_us = [], [], [], [], []
    skipped = behind_warm = 0
    with sut.SUT(calls, sync, 1, 0.0, keepalive_ms) as s:
        start = time.perf_counter_ns() + int(LEAD_IN_S * 1e9)
        t_at, t_nom = start + at, start + nominal
        frame_end, done = start, np.zeros(frames, np.int64)
        for j in range(frames):
            t = int(t_at[j])
            now = time.perf_counter_ns()
            if now > t:  # due while the source was busy (a frame or a warm-up still ran)
                if p.drop_late and frame_end > t:
                    dropped.append(j)
                    continue
                queued.append(True)
            else:
                if lead_ns:
                    w = int(t_nom[j]) - lead_ns
                    if now < w:
                        wait_until(w)
                        w0 = time.perf_counter_ns()
                        warm()
                        sync()
                        warm_us.append((time.perf_counter_ns() - w0) / 1e3)
                    else:
                        skipped += 1  # the source reached the frame within the lead: it has just run
                # a warm-up that overran the frame's time: the frame queued behind it (never dropped for it)
                behind = time.perf_counter_ns() > t
                queued.append(behind)
                behind_warm += behind
                if p.warm_spin:
                    while time.perf_counter_ns() < t:
                        pass
                else:
                    wait_until(t)
            t0, t1 = s.serve([j])
            if s.error is not None:
                raise s.error
            served.append(j)
            issue.append(t0 - t)
            done[j], frame_end = t1, t1
    idx = np.asarray(served, np.int64)
    us = (done[idx] - t_at[idx]) / 1e3
    arrival = at[idx] / 1e9
    call = np.asarray([s.took[i] for i in served], np.float64) / 1e3
    arrays = {
        "us": np.asarray(us, np.float32),
        "issue_us": np.asarray(np.asarray(issue) / 1e3, np.float32),
        "queued": np.asarray(queued, bool),
        "arrival_s": arrival,
        "camera": cam[idx].astype(np.uint16),
        "frame": idx.astype(np.uint32),
        "call_us": np.asarray(call, np.float32),
        "batch": np.ones(len(idx), np.uint8),
        "wall_s": np.asarray([float((arrival + us / 1e6).max() - arrival.min())], np.float64),
        "dropped_s": np.asarray(at[np.asarray(dropped, np.int64)] / 1e9, np.float64),
        "warm_us": np.asarray(warm_us, np.float32),
    }
    facts = {
        "frames": frames,
        "drop_late": p.drop_late,
        "warm_lead_us": lead_ns / 1e3 if lead_ns else None,
        "cold_call_us": cold,
        "warm_calls": len(warm_us),
        "warm_skipped": skipped,
        "behind_warm": behind_warm,
    }
    return {"arrays": arrays, "facts": facts}


def describe(arrays: dict, fps: float, cameras: int, deadline_us: float, facts: dict) -> dict:
    """The camera row's own figures beside the latency verdict: what was offered and achieved, what queued or
    was dropped, the source's issue error (and whether it is small enough to trust: p99 within a tenth of the
    deadline), and the warm-up."""
    us, issue = np.asarray(arrays["us"], np.float64), np.asarray(arrays["issue_us"], np.float64)
    queued = np.asarray(arrays["queued"], bool)
    wall, offered = float(arrays["wall_s"][0]), fps * cameras
    own = np.sort(issue[~queued])  # frames the source waited for: its own timing error, no queueing
    frames = int(facts["frames"])
    dropped = len(arrays["dropped_s"])
    achieved = len(us) / wall if wall > 0 else 0.0
    err_p99 = stats.percentile(own, 99) if len(own) else None
    warm = np.asarray(arrays["warm_us"], np.float64)
    return {
        "frames": frames,
        "dropped": dropped,
        "queued": int(queued.sum()),
        "drop_late": "yes" if facts.get("drop_late") else "no",
        "achieved_qps": achieved,
        "kept_up": achieved / offered,
        "mean_batch": 1.0,
        "issue_p50_us": stats.percentile(np.sort(issue), 50),
        "issue_p99_us": stats.percentile(np.sort(issue), 99),
        "issue_max_us": float(issue.max()),
        "source_err_p50_us": stats.percentile(own, 50) if len(own) else None,
        "source_err_p99_us": err_p99,
        "source_err_max_us": float(own[-1]) if len(own) else None,
        "source_err_ok": "yes" if err_p99 is not None and err_p99 <= deadline_us / 10 else "no",
        "lost_rate": (int((us > deadline_us).sum()) + dropped) / frames if frames else None,
        "warm_lead_us": facts.get("warm_lead_us"),
        "cold_call_us": facts.get("cold_call_us"),
        "warm_calls": facts.get("warm_calls", 0),
        "warm_skipped": facts.get("warm_skipped", 0),
        "behind_warm": facts.get("behind_warm", 0),
        "warm_p50_us": stats.percentile(np.sort(warm), 50) if len(warm) else None,
        "spin_us": SPIN_US,
    }
