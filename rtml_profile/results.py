"""Result tables: locked read-modify-write of shared CSV files (rows of other hosts and models are kept)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from rtml_profile.files import atomic_write, locked
from rtml_profile.paths import DATA, REPORTS  # noqa: F401  (re-exported for callers of the old names)


def upsert_rows(path, rows: list[dict], key: list[str]):
    """Merge `rows` into the CSV at `path` under a lock; a new row replaces an old one with the same key.

    Rows of other keys (another host, another model) are kept, so concurrent writers and other hosts never
    lose rows. Returns the merged DataFrame.
    """
    import pandas as pd

    path = Path(path)
    new = pd.DataFrame(rows)
    with locked(path):
        if path.is_file() and path.stat().st_size:
            old = pd.read_csv(path, keep_default_na=False, na_values=[""])
            merged = pd.concat([old, new], ignore_index=True)
        else:
            merged = new
        merged = merged.drop_duplicates(subset=key, keep="last").sort_values(key, kind="stable")
        atomic_write(path, merged.to_csv(index=False))
    return merged


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
