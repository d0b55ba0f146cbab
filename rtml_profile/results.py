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

import atexit
import contextlib
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
from rtml_profile.files import append_synced, atomic_write, check_writable, jsonable, locked, read_npz, write_json
from rtml_profile.host import environment

KEY = schema.KEYS["bench"]
ATTEMPT = list(schema.ATTEMPT)
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
    """Merge `rows` into the `kind` table at `path` under a lock, in one read-merge-write (for tables written once
    per command: analysis, checks, precision): a new row replaces an old one with the same key (schema.KEYS[kind]);
    rows of other keys (another host, another model) are kept. Returns the merged DataFrame."""
    return _upsert(Path(path), rows, kind)[1]


def _upsert(path: Path, rows: list[dict], kind: str):
    import pandas as pd

    key = schema.KEYS[kind]
    with locked(path):
        old = read_csv(path, kind)  # the journal folded in: it is compacted by this write
        merged = pd.concat([old, pd.DataFrame(rows)], ignore_index=True) if len(old) else pd.DataFrame(rows)
        merged = merged.drop_duplicates(subset=key, keep="last").sort_values(key, kind="stable")
        text = schema.to_csv(merged, kind)
        schema.check_before_write(path, text, kind)
        atomic_write(path, text)
        schema.journal(path).unlink(missing_ok=True)
        for rel in set(old.get("samples_file", [])) - set(merged.get("samples_file", [])):
            drop_unreferenced(path.parent, rel, merged)  # samples files no row names any more
    return old, merged


def record_with_samples(data_dir: Path, kind: str, row: dict, stem: str, arrays: dict | None):
    """Persist one row of the keyed table `kind` in `data_dir` with its raw samples (`arrays['us']` plus any other
    arrays, see write_samples), through the one Store rule. Returns the row as recorded."""
    data_dir = Path(data_dir)
    row = dict(row)
    if arrays is not None:
        extra = {k: v for k, v in arrays.items() if k != "us"}
        row["samples_file"], row["samples_sha256"] = write_samples(data_dir, stem, arrays["us"], **extra)
    (outcome,) = Store.of(data_dir, kind).record([(row, None)])
    if not outcome.saved:
        print(f"warning: {data_dir / schema.FILES[kind]}: {outcome.note}", file=sys.stderr)
    return row


def _attempt(row: dict, why: str) -> dict:
    """The ATTEMPT columns a kept good row carries for a run that did not replace it."""
    return dict(zip(ATTEMPT, [row.get("status", "ok"), why, row.get("timestamp") or now()], strict=True))


@dataclass
class Outcome:
    saved: bool  # False: an earlier good row was kept and this attempt recorded on it
    note: str = ""


_RULE = ("status", "accuracy_status", "n", "timestamp", "samples_file")  # what degraded() and the samples rule read


class Store:
    """One result table of a results folder (bench.csv, load.csv ...), kept so that recording a row costs the
    same into a table of 10^5 rows as into an empty one.

    `record` appends each row to the table's journal (schema.journal) under the table's lock, after the one
    keep-the-good-row rule (`degraded`) decided it against the row of its key that every earlier writer left
    (an index of keys read once per process, then only the journal's new lines); `compact` folds the journal
    into the CSV (atomic rename) once per command, at exit and whenever a table is opened with a journal left by
    a killed command. Every reader folds the journal in, so a row is visible the moment `record` returns, and a
    kill at any moment loses no row that was recorded."""

    _open: dict = {}  # (folder, table) -> Store of this process: compacted at exit

    @classmethod
    def of(cls, data_dir, kind: str) -> Store:
        key = (Path(data_dir).resolve(), kind)
        if key not in cls._open:
            if not cls._open:
                atexit.register(compact_all)
            cls._open[key] = cls(data_dir, kind)
        return cls._open[key]

    def __init__(self, data_dir, kind: str):
        self.dir, self.kind = Path(data_dir), kind
        self.csv = self.dir / schema.FILES[kind]
        self.journal = schema.journal(self.csv)
        self._index, self._seen = None, None  # key -> the rule's cells of its row; what the index has read

    def read(self, columns=None):
        return schema.read_table(self.csv, self.kind, columns=columns)

    def _stat(self, path: Path):
        try:
            st = path.stat()
            return st.st_ino, st.st_mtime_ns, st.st_size
        except FileNotFoundError:
            return None

    def _sync(self):
        """Under the lock: bring the index up to what every writer has recorded (the journal's new lines, or the
        whole table again when another process compacted it since)."""
        csv_now, j_now = self._stat(self.csv), self._stat(self.journal)
        if self._index is None or self._seen[0] != csv_now or (j_now and self._seen[1] != j_now[0]) or (
            j_now is None and self._seen[2]
        ):  # fmt: skip
            table = self.read(columns=(*schema.KEYS[self.kind], *_RULE))
            cols = [c for c in _RULE if c in table.columns]
            self._index = {
                k: dict(zip(cols, v))
                for k, v in zip(schema.key_column(self.kind, table), table[cols].itertuples(False))
            }
            self._seen = (csv_now, j_now and j_now[0], j_now[2] if j_now else 0)
            return
        if j_now and j_now[2] > self._seen[2]:
            entries, offset = schema.read_journal(self.journal, self._seen[2])
            for e in entries:
                self._apply(e)
            self._seen = (csv_now, j_now[0], offset)

    def _apply(self, entry: dict):
        if "row" in entry:
            r = entry["row"]
            self._index[schema.key_text(self.kind, r)] = {c: r.get(c) for c in _RULE}
        else:
            a = entry["attempt"]
            self._index.setdefault(schema.key_text(self.kind, a), {})  # (only for a key the index already has)

    def record(self, items: list[tuple[dict, np.ndarray | None]], stem=None) -> list[Outcome]:
        """Persist rows [(row, samples in microseconds or None)] (samples first, named by `stem(row)`): a row that
        `degraded` says must not replace the good row of its key is recorded as that row's attempt. Returns one
        Outcome per row."""
        import json

        rows = []
        for row, us in items:
            row = dict(row)
            if us is not None:
                row["samples_file"], row["samples_sha256"] = write_samples(self.dir, stem(row), us)
            rows.append(row)
        self._check_rows(rows)
        outcomes, dropped, lines = [], [], []
        with locked(self.csv):
            self._sync()
            for row in rows:
                k = schema.key_text(self.kind, row)
                old = self._index.get(k)
                why = degraded(row, old) if schema.TABLES[self.kind].protect else ""
                if why:
                    attempt = {**{c: row.get(c) for c in schema.KEYS[self.kind]}, **_attempt(row, why)}
                    lines.append({"attempt": attempt})
                    outcomes.append(
                        Outcome(False, f"kept the earlier good row ({old.get('timestamp', '')}): this run {why}")
                    )
                    dropped.append(row.get("samples_file"))  # the rejected attempt's (the kept row cites its own)
                else:
                    lines.append({"row": row})
                    outcomes.append(Outcome(True))
                    if old and old.get("samples_file") != row.get("samples_file"):
                        dropped.append(old.get("samples_file"))  # the replaced row's
                    self._index[k] = {c: row.get(c) for c in _RULE}
            text = "".join(json.dumps(e, default=jsonable, allow_nan=True) + "\n" for e in lines)
            append_synced(self.journal, text)
            self._seen = (self._seen[0], self._stat(self.journal)[0], self._stat(self.journal)[2])
            named = {v.get("samples_file") for v in self._index.values()}
            for rel in dropped:
                if rel not in named:
                    drop_unreferenced(self.dir, rel, {})
        return outcomes

    def _check_rows(self, rows: list[dict]):
        """The rows, as their CSV would hold them, pass the table's check (before anything is written)."""
        import pandas as pd

        text = schema.to_csv(pd.DataFrame(rows), self.kind)
        schema.check_before_write(self.csv, text, self.kind)

    def compact(self):
        """Fold the journal into the CSV (one read, one sorted atomic write) and remove it."""
        if not self.journal.exists():
            return
        with locked(self.csv):
            if not self.journal.exists():
                return
            atomic_write(self.csv, schema.compacted_text(self.csv, self.kind))
            self.journal.unlink()
            self._index = None

    def prime(self):
        """Read the table once now (checking it) and index its keys, so the first `record` need not."""
        with locked(self.csv):
            self._sync()


def compact_all():
    """Compact every table this process recorded into (at exit; commands call it when their rows are in)."""
    for store in list(Store._open.values()):
        with contextlib.suppress(UserError, OSError):
            store.compact()


class BenchStore:
    """bench.csv and samples/ under one results folder (a Store of the bench table)."""

    def __init__(self, data_dir: Path = paths.DATA):
        self.dir = Path(data_dir)
        self.csv = self.dir / paths.BENCH_CSV
        self.store = Store.of(self.dir, "bench")

    def check(self):
        """Before any measuring: the folder is writable and the existing table is readable (a journal left by a
        killed command is compacted now)."""
        check_writable(self.dir)
        check_writable(self.dir / SAMPLES)
        self.store.compact()
        self.store.prime()

    def read(self):
        return read_csv(self.csv, "bench")

    def _stem(self, row: dict) -> str:
        return (  # every part slugged: a row's values never make a path of their own
            f"{slug(row['host'])}/{slug(row['model'])}/{slug(row['runtime'])}_{slug(row['precision'])}"
            f"{_variant_part(row)}_{slug(row['scope'])}_b{slug(row['batch'])}"
        )

    def record(self, row: dict, samples_ns: np.ndarray | None = None, *, samples_us=None) -> Outcome:
        """Persist one row (and its samples: nanoseconds as timed, or microseconds as another results folder
        stores them) now; a degraded row never replaces a good one."""
        if samples_ns is not None:
            samples_us = np.asarray(samples_ns, np.float64) / 1e3
        return self.record_rows([(row, samples_us)])[0]

    def record_rows(self, items: list[tuple[dict, np.ndarray | None]]) -> list[Outcome]:
        """Persist rows [(row, samples in microseconds or None)] in one append (rows known together, such as an
        absent runtime's), row by row as `record` would."""
        return self.store.record(items, self._stem)

    def compact(self):
        self.store.compact()

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
    us = schema.check_samples(us, str(path))  # real, finite, 1-D, non-negative: a crafted file is one sentence
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
