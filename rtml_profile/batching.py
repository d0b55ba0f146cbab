"""One place for running a function over a large array in chunks (evaluation sets do not fit one call)."""

from __future__ import annotations

CHUNK = 1024


def in_chunks(fn, x, chunk: int = CHUNK, concat=None):
    """fn(x[i:i+chunk]) for every chunk, joined with `concat` (numpy.concatenate unless given, e.g. torch.cat)."""
    if concat is None:
        import numpy as np

        concat = np.concatenate
    return concat([fn(x[i : i + chunk]) for i in range(0, len(x), chunk)])


def feeds_in_chunks(fn, feeds: dict, chunk: int = CHUNK) -> dict:
    """fn(feeds cut to rows i:i+chunk) -> {output name: array} for every chunk, joined per output along axis 0."""
    import numpy as np

    rows = len(next(iter(feeds.values())))
    parts = [fn({k: v[i : i + chunk] for k, v in feeds.items()}) for i in range(0, rows, chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
