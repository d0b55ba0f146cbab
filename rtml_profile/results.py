"""The results store: result tables and the raw samples behind their rows, written so that nothing is lost.

- A benchmark row and its raw samples are one unit. The samples go first, into a file named after the row's key
  and a digest of the samples themselves; then the row, which names that file and digest, replaces the old row
  in bench.csv (atomic rename, under a lock). A row therefore never points at samples it was not computed from,
  and a process killed between the two steps leaves the old row with its old samples.
- Rows are persisted as they are measured: a run killed at any moment keeps every row finished before it.
- A failed, skipped or degraded measurement never replaces a good row: the good row stays and carries the
  attempt (`attempt_status`, `attempt_reason`, `attempt_at`), and the caller is told.
- Paths in rows are relative to the results folder, so rows from any machine can be merged.
- A results file is input from elsewhere (committed, merged from other machines): a path read from it is data,
  used only when `samples_path` (the one containment rule) accepts it, for reading and for deleting alike.
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import numpy as np

from rtml_profile import UserError, paths, schema
from rtml_profile.files import atomic_write, check_writable, locked, read_npz, write_json
from rtml_profile.host import environment

KEY = schema.KEYS["bench"]
ATTEMPT = ["attempt_status", "attempt_reason", "attempt_at"]
SAMPLES = "samples"
P99_SAMPLES = 662  # stats.min_samples(99): a row with fewer cannot support the p99 a row with more did


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-")[:80] or "x"


def read_csv(path: Path, kind: str):
    """A result table as a DataFrame; a missing or empty file is an empty table; damage is one UserError."""
    return schema.read_table(path, kind)


def upsert_rows(path, rows: list[dict], kind: str):
    """Merge `rows` into the `kind` table at `path` under a lock; a new row replaces an old one with the same key
    (schema.KEYS[kind]).

    Rows of other keys (another host, another model) are kept, so concurrent writers and other hosts never
    lose rows. Returns the merged DataFrame.
    """
    return _upsert(Path(path), rows, kind)[1]


def _upsert(path: Path, rows: list[dict], kind: str, protect: bool = False):
    """(table before, table after) of one locked read-merge-write of `path`. With `protect`, a row whose status is
    not ok never replaces a good (ok) row of its key: the good row stays and carries the attempt (ATTEMPT)."""
    import pandas as pd

    key = schema.KEYS[kind]
    with locked(path):
        old = read_csv(path, kind)
        if protect and len(old):
            rows = [_kept_or_new(old, r, key) for r in rows]
        merged = pd.concat([old, pd.DataFrame(rows)], ignore_index=True) if len(old) else pd.DataFrame(rows)
        merged = merged.drop_duplicates(subset=key, keep="last").sort_values(key, kind="stable")
        text = merged.to_csv(index=False)
        schema.check_before_write(path, text, kind)
        atomic_write(path, text)
        for rel in set(old.get("samples_file", [])) - set(merged.get("samples_file", [])):
            drop_unreferenced(path.parent, rel, merged)  # samples files no row names any more
    return old, merged


def record_with_samples(data_dir: Path, kind: str, row: dict, stem: str, arrays: dict | None):
    """Persist one row of the keyed table `kind` (schema.FILES[kind] in `data_dir`) with its raw samples: the
    samples file first (`arrays['us']` plus any other arrays, see write_samples), then the row, merged by key
    under a lock; a row that failed never replaces a good one of its key (the good one records the attempt).
    Samples files no row names any more are removed. Returns the row as given."""
    data_dir = Path(data_dir)
    row = dict(row)
    if arrays is not None:
        extra = {k: v for k, v in arrays.items() if k != "us"}
        row["samples_file"], row["samples_sha256"] = write_samples(data_dir, stem, arrays["us"], **extra)
    _upsert(data_dir / schema.FILES[kind], [row], kind, protect=True)
    return row


def _kept_or_new(table, row: dict, key: list[str]) -> dict:
    """`row`, unless it failed where `table` holds a good row of its key: then that row, carrying the attempt."""
    if row.get("status") == "ok":
        return row
    good = table[_same_key(table, row, key) & (table["status"] == "ok")]
    if not len(good):
        return row
    kept = {k: v for k, v in good.iloc[-1].to_dict().items() if v == v}  # NaN cells stay empty
    return {**kept, **_attempt(row, row.get("reason", ""))}


def _attempt(row: dict, why: str) -> dict:
    """The ATTEMPT columns a kept good row carries for a run that did not replace it."""
    return dict(zip(ATTEMPT, [row.get("status", "ok"), why, row.get("timestamp") or now()], strict=True))


@dataclass
class Outcome:
    saved: bool  # False: an earlier good row was kept and this attempt recorded on it
    note: str = ""


class BenchStore:
    """bench.csv and samples/ under one results folder."""

    def __init__(self, data_dir: Path = paths.DATA):
        self.dir = Path(data_dir)
        self.csv = self.dir / paths.BENCH_CSV

    def check(self):
        """Before any measuring: the folder is writable and the existing table is readable."""
        check_writable(self.dir)
        check_writable(self.dir / SAMPLES)
        self.read()

    def read(self):
        return read_csv(self.csv, "bench")

    def _write_samples(self, row: dict, us: np.ndarray) -> tuple[str, str]:
        stem = (  # every part slugged: a row's values never make a path of their own
            f"{slug(row['host'])}/{slug(row['model'])}/{slug(row['runtime'])}_{slug(row['precision'])}"
            f"{_variant_part(row)}_{slug(row['scope'])}_b{slug(row['batch'])}"
        )
        return write_samples(self.dir, stem, us)

    def record(self, row: dict, samples_ns: np.ndarray | None = None, *, samples_us=None) -> Outcome:
        """Persist one row (and its samples: nanoseconds as timed, or microseconds as another results folder
        stores them) now; a degraded row never replaces a good one."""
        if samples_ns is not None:
            samples_us = np.asarray(samples_ns, np.float64) / 1e3
        return self.record_rows([(row, samples_us)])[0]

    def record_rows(self, items: list[tuple[dict, np.ndarray | None]]) -> list[Outcome]:
        """Persist rows [(row, samples in microseconds or None)] in one read-check-write of the table (rows known
        together, such as an absent runtime's, cost one write, not one each), row by row as `record` would."""
        import pandas as pd

        rows = []
        for row, us in items:
            row = dict(row)
            if us is not None:
                row["samples_file"], row["samples_sha256"] = self._write_samples(row, us)
            rows.append(row)
        outcomes, dropped = [], []
        with locked(self.csv):
            table = self.read()
            for row in rows:
                same = _same_key(table, row) if len(table) else pd.Series(dtype=bool)
                old = table[same].iloc[-1].to_dict() if same.any() else None
                why = degraded(row, old)
                if why:
                    for c in ATTEMPT:
                        if c not in table:
                            table[c] = None
                    table.loc[same, ATTEMPT] = list(_attempt(row, why).values())
                    outcomes.append(
                        Outcome(False, f"kept the earlier good row ({old.get('timestamp', '')}): this run {why}")
                    )
                else:
                    table = pd.concat([table[~same] if len(table) else table, pd.DataFrame([row])], ignore_index=True)
                    outcomes.append(Outcome(True))
                # a replaced row's samples, or a rejected attempt's (the kept row still cites its own)
                dropped.append((old or {}).get("samples_file") if outcomes[-1].saved else row.get("samples_file"))
            table = table.sort_values(KEY, kind="stable")
            text = table.to_csv(index=False)
            schema.check_before_write(self.csv, text, "bench")
            atomic_write(self.csv, text)
            for rel in dropped:
                drop_unreferenced(self.dir, rel, table)
        return outcomes

    def load_samples(self, row: dict) -> np.ndarray | None:
        """The raw latency samples (microseconds) a row was computed from; None when it has none.

        A samples file that is missing, unreadable or whose digest differs from the row's raises UserError.
        """
        return load_samples(self.dir, row)


def write_samples(data_dir: Path, stem: str, us, **extra) -> tuple[str, str]:
    """Write raw samples `us` (microseconds, float32) and any `extra` arrays of the same row to
    samples/<stem>.<digest>.npz under `data_dir`, atomically; returns (relative path, sha256 of `us`).

    The file is named by the digest of its latencies, so a row can name the exact samples it came from.
    """
    data = np.asarray(us, np.float32)
    digest = hashlib.sha256(data.tobytes()).hexdigest()
    rel = f"{SAMPLES}/{stem}.{digest[:12]}.npz"
    write_npz(data_dir, rel, us=data, **extra)
    return rel, digest


def write_npz(data_dir: Path, rel: str, **arrays) -> None:
    """Write `arrays` as a compressed .npz at `data_dir`/`rel` (inside samples/), atomically, never through a
    symbolic link that a results folder from elsewhere holds."""
    folder = Path(data_dir)
    for part in PurePosixPath(rel).parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise UserError(f"{folder} is a symbolic link; raw samples are written only inside the results folder")
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write(Path(data_dir) / rel, buf.getvalue())


def samples_path(data_dir: Path, rel) -> tuple[Path | None, str]:
    """The one containment rule for a path read from a results file (a row's `samples_file`): (the path, '') when
    `rel` is relative, lies inside `data_dir`/samples/ with no '..' and no symlink on the way (the samples folder
    included), and names a regular file; (None, why) otherwise. A file that is simply missing is (path, 'missing'),
    for the caller to report as damage. Nothing outside the folder is opened, followed or deleted."""
    if not isinstance(rel, str) or not rel:
        return None, "no samples file"
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    if PurePosixPath(rel).is_absolute() or len(parts) < 2 or parts[0] != SAMPLES or ".." in parts or "\0" in rel:
        return None, f"does not lie inside {SAMPLES}/ of the results folder"
    path = Path(data_dir)
    for i, part in enumerate(parts):
        path = path / part
        try:
            mode = path.lstat().st_mode
        except OSError:
            return path, "missing"
        if stat.S_ISLNK(mode):
            return None, "is (or passes through) a symbolic link"
        if i < len(parts) - 1 and not stat.S_ISDIR(mode):
            return None, "does not lie inside a folder"
    if not stat.S_ISREG(mode):
        return None, "is not a regular file"
    if not path.resolve().is_relative_to((Path(data_dir) / SAMPLES).resolve()):
        return None, f"does not lie inside {SAMPLES}/ of the results folder"
    return path, ""


def _refused(data_dir: Path, row: dict, table: str, why: str):
    """One line on stderr for a row whose samples path the rule refused (the row is then taken to have none)."""
    what = " ".join(str(row.get(k, "")) for k in ("host", "model", "runtime", "precision", "scope", "batch"))
    rel = str(row.get("samples_file"))[:200]
    print(f"warning: {Path(data_dir) / table} row ({what.strip()}): samples_file {rel!r} {why}; the row is treated "
          f"as having no samples", file=sys.stderr)  # fmt: skip


def drop_unreferenced(data_dir: Path, rel, table):
    """Remove the samples file `rel` when no row of `table` names it any more, and only if `samples_path` accepts
    it (a row from elsewhere can never make this delete a file outside the results folder's samples/)."""
    if isinstance(rel, str) and rel and rel not in set(table.get("samples_file", [])):
        p, why = samples_path(data_dir, rel)
        if p is not None and not why:
            p.unlink()


def load_samples(data_dir: Path, row: dict, table: str = paths.BENCH_CSV) -> np.ndarray | None:
    arrays = load_sample_arrays(data_dir, row, table)
    return None if arrays is None else arrays["us"]


def load_sample_arrays(data_dir: Path, row: dict, table: str = paths.BENCH_CSV) -> dict | None:
    """Every array of a row's samples file ('us': latencies in microseconds, plus any extra ones); None when the
    row has none, or names a path `samples_path` refuses (said on stderr). A file that is missing, unreadable or
    whose digest differs from the row's raises UserError."""

    rel = row.get("samples_file")
    if not isinstance(rel, str) or not rel:
        return None
    path, why = samples_path(data_dir, rel)
    if path is None:
        _refused(data_dir, row, table, why)
        return None
    try:
        arrays = read_npz(path, f"raw samples of a {table} row")
        us = arrays["us"]
    except (UserError, KeyError) as e:
        raise UserError(
            f"{path} (raw samples of a {table} row) is missing or unreadable ({type(e).__name__}); "
            f"re-run that benchmark"
        ) from None
    want = row.get("samples_sha256")
    if isinstance(want, str) and want and hashlib.sha256(np.asarray(us, np.float32).tobytes()).hexdigest() != want:
        raise UserError(f"{path} does not hold the samples its {table} row was computed from (digest differs)")
    return arrays


def _variant_part(row: dict) -> str:
    v = row.get("variant") or ""
    return f"_{slug(v)}" if v else ""


def _same_key(table, row, key=KEY):
    mask = None
    for k in key:
        m = table[k].astype(str) == str(row.get(k, ""))
        mask = m if mask is None else (mask & m)
    return mask


def degraded(new: dict, old: dict | None) -> str:
    """Why `new` must not replace `old` ('' when it may): only a good old row is protected."""
    if old is None or old.get("status") != "ok":
        return ""
    if new.get("status") != "ok":
        return f"{new.get('status')}: {new.get('reason', '')}"
    if str(new.get("accuracy_status", "")).startswith("failed"):
        return f"measured latency, but its accuracy pass {new['accuracy_status']}"
    n_old, n_new = _num(old.get("n")), _num(new.get("n"))
    if n_new < min(n_old, P99_SAMPLES):
        return f"took only {n_new:.0f} samples where the kept row has {n_old:.0f}"
    return ""


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def save_checks(data_dir: Path, records: list[dict]):
    """Merge output-check records into <data_dir>/checks.csv (one row per host x model x runtime x precision x
    output; a new check replaces the old one with the same key)."""
    # an infinite error is said in the row's problem; the cell stays empty, which the reader accepts
    blank = lambda v: None if isinstance(v, (float, np.floating)) and not np.isfinite(v) else v
    rows = [{**{k: blank(v) for k, v in r.items()}, "timestamp": r.get("timestamp") or now()} for r in records]
    return upsert_rows(Path(data_dir) / paths.CHECKS_CSV, rows, "checks")


# ---------------------------------------------------------------- where-the-time-goes records

PROFILE_KINDS = ("limits", "nodes", "lifecycle", "fidelity")  # per-host records (fidelity: measure/fidelity.py)


def record_path(kind: str, host: str, data_dir: Path = paths.DATA) -> Path:
    """reports/data/<kind>_<host slug>.json: one record per host and kind."""
    return Path(data_dir) / f"{kind}_{slug(host)}.json"


def save_entries(kind: str, entries: list[dict], key: tuple[str, ...], data_dir: Path = paths.DATA, merge=None):
    """Merge `entries` into this host's <kind> record under a lock: an entry replaces the one with its key, or
    `merge(old entries, new entries)` gives the entries to keep. Returns (path, the entries written)."""
    env = environment()
    path = record_path(kind, env["host"], data_dir)
    check_writable(Path(data_dir))
    with locked(path):
        old = schema.read_profile_record(path, kind)["entries"] if path.is_file() else []
        kept = (merge or (lambda old, new: _replace_by_key(old, new, key)))(old, entries)
        write_json(path, {"kind": kind, "host": env["host"], "environment": env, "entries": kept})
    return path, kept


def keep_good(key: tuple[str, ...]):
    """A `merge` for save_entries: a new entry replaces the old one of its key, except that one whose status is not
    ok never replaces a good one; the good one stays and carries the attempt (attempt_status/_reason/_at)."""

    def merge(old: list[dict], new: list[dict]) -> list[dict]:
        good = {tuple(e.get(k) for k in key): e for e in old if e.get("status") == "ok"}
        kept = [
            {**good[k], "attempt_status": e.get("status"), "attempt_reason": e.get("reason", ""),
             "attempt_at": e.get("timestamp", "")}
            if e.get("status") != "ok" and (k := tuple(e.get(c) for c in key)) in good else e
            for e in new
        ]  # fmt: skip
        return _replace_by_key(old, kept, key)

    return merge


def _replace_by_key(old: list[dict], new: list[dict], key: tuple[str, ...]) -> list[dict]:
    keys = {tuple(e[k] for k in key) for e in new}
    return [e for e in old if tuple(e.get(k) for k in key) not in keys] + new
