"""What a measuring request may ask for, checked before anything heavy runs: batch sizes, runtimes, scopes,
precisions, variants, and whether the batch fits in memory."""

from __future__ import annotations

import re

from rtml_profile import UserError, runtimes
from rtml_profile.host import available_memory_bytes
from rtml_profile.vocab import PRECISIONS, SCOPES

DEFAULT_BATCHES = (1, 16, 64, 256, 1024)


def parse_batches(text: str | None) -> list[int]:
    if not text:
        return list(DEFAULT_BATCHES)
    out = []
    for part in text.split(","):
        part = part.strip()
        if not re.fullmatch(r"\d+", part) or int(part) <= 0:
            raise UserError(f"batch sizes must be positive integers separated by commas, got {part!r}")
        out.append(int(part))
    return sorted(set(out))


def check_request(runtime_names: list[str], precisions, scopes, variants=None):
    for n in runtime_names:
        runtimes.target(n)
    for s in scopes or []:
        if s not in SCOPES:
            raise UserError(f"unknown scope {s!r}; valid scopes: {', '.join(SCOPES)}")
    for p in precisions or []:
        if p not in PRECISIONS:
            raise UserError(f"unknown precision {p!r}; valid precisions: {', '.join(PRECISIONS)}")
    offered = {v: n for n in runtime_names for v in runtimes.get(n).caps.variants if v}
    for v in variants or []:
        if v not in offered:
            have = ", ".join(f"{v} ({n})" for v, n in offered.items()) or "none (no asked runtime has variants)"
            raise UserError(f"unknown variant {v!r} (e.g. a torch.compile mode); the asked runtimes offer: {have}")


def check_memory(targets: list, batches: list[int]):
    """Refuse a batch whose inputs alone (plus copies the runtimes make) would not fit in free memory."""
    free = available_memory_bytes()
    for t in targets:
        need = 4 * t.input_bytes(max(batches))  # input, its device/converted copy, outputs and activations
        if need > free // 2:
            raise UserError(
                f"batch {max(batches)} of {t.ref.name} needs about {need / 2**30:.1f} GiB "
                f"(inputs and their copies); this machine has {free / 2**30:.1f} GiB free; use a "
                f"smaller --batch"
            )
