"""What each result file must hold, and readers that check it: a defect is one sentence naming the file.

Result files (reports/data/): bench.csv and analysis.csv (tables), train_<id>.json and gpu_train_<id>.json
(training records), train_speed_<where>.json (training-speed benchmarks), samples/**.npz (raw latencies in us),
limits_<host>.json, nodes_<host>.json and lifecycle_<host>.json (where the time goes: rtml_profile.scenarios.where).
Columns or keys beyond the schema are kept: writers may add new ones without breaking readers.
Every reader raises `rtml_profile.UserError("<path>: <problem>")` on a defect; nothing else escapes.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

from rtml_profile import UserError, tables
from rtml_profile.files import read_json, read_npz

TABLES = tables.TABLES  # one declaration per table (rtml_profile/tables.py); the names below are read from it
KEYS = {name: list(t.key) for name, t in TABLES.items()}
FILES = {name: t.file for name, t in TABLES.items()}
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


def read_table(path, kind: str, allow_empty: bool = True, columns=None):
    """`path` (the `kind` table's CSV, its journal folded in) as a validated, typed DataFrame.

    A missing or 0-byte file gives an empty DataFrame with the schema's columns (unless `allow_empty` is False,
    then a 0-byte file is a defect). Integer columns come back as int64, numeric ones as float64; extra columns
    are kept as read. With `columns`, only those (and the required ones) are read and checked: a store's index
    of keys reads 12 of a bench table's 100 columns. Any defect raises UserError("<path>: <problem>").
    """
    import pandas as pd

    path = Path(path)
    empty = empty_table(kind)
    if not path.is_file():
        if path.exists():
            raise UserError(f"{path}: not a file")
        return _check_table(path, _fold(path, empty.astype(object), kind), kind) if journal(path).is_file() else empty
    if path.stat().st_size == 0:
        if allow_empty:
            return empty
        raise UserError(f"{path}: the file is empty (not even a header line)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text CSV file (undecodable byte at offset {e.start})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    if "\x00" in text:
        raise UserError(f"{path}: not a text CSV file (it holds NUL bytes)")
    wanted = None if columns is None else {*columns, *TABLES[kind].required_columns, "host_label"}
    try:
        df = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""], dtype=str,
                         usecols=None if wanted is None else (lambda c: c in wanted))  # fmt: skip
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise UserError(f"{path}: not a readable CSV table ({_first_line(e)})") from None
    folded = _fold(path, df, kind)
    if wanted is not None:
        folded = folded[[c for c in folded.columns if c in wanted]]
    return _check_table(path, folded, kind)


def check_before_write(path, text: str, kind: str):
    """Raise UserError when `text`, about to be written to the `kind` table at `path`, is a file read_table would
    refuse: a writer never leaves a table that breaks every later run in its folder."""
    import pandas as pd

    try:
        if "\x00" in text:
            raise UserError(f"{path}: a value holds a NUL byte")
        df = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""], dtype=str)
        _check_table(Path(path), df, kind)
    except UserError as e:
        raise UserError(f"not written, the rows of this run would damage it: {e}") from None


def _cells(values, fn, dtype):
    """fn applied to every cell of an object array, as `dtype` (one Python call per cell: for tables of a few
    hundred rows that is far cheaper than a dozen pandas operations per column)."""
    import numpy as np

    return np.frompyfunc(fn, 1, 1)(values).astype(dtype)


def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and v != v) or not str(v).strip()


ATTEMPT = ("attempt_status", "attempt_reason", "attempt_at")


def journal(path) -> Path:
    """The rows recorded into the table at `path` since it was last compacted: `<file>.journal`, one JSON entry
    a line, appended under the table's lock ({"row": {...}} replaces its key's row; {"attempt": {...}} records on
    the kept good row of its key a run that did not replace it). Every reader folds it in; results.Store compacts
    it into the CSV once per command."""
    path = Path(path)
    return path.with_name(path.name + ".journal")


def read_journal(path, start: int = 0) -> tuple[list[dict], int]:
    """(entries, offset after the last whole line) of the journal `path` from byte `start`; a last line without
    its newline is an append in progress (or cut by a kill) and is not read."""
    import json

    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return [], start
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    whole = data[: data.rfind(b"\n") + 1]
    entries = []
    for n, line in enumerate(whole.splitlines(), 1):
        try:
            e = json.loads(line)
        except ValueError:
            e = None
        if not isinstance(e, dict) or not isinstance(e.get("row", e.get("attempt")), dict):
            raise UserError(f"{path}: entry {n} is not a recorded row (the journal is damaged; remove it to drop "
                            f"the rows recorded since the table was last compacted)")  # fmt: skip
        entries.append(e)
    return entries, start + len(whole)


def key_text(kind: str, row) -> str:
    """The key of `row` (a dict or a row of text cells) in the `kind` table, as canonical text: numbers as one
    spelling (1 and 1.0 are one batch), a missing cell as its default; the parts joined by '\x1f'."""
    t = TABLES[kind]
    out = []
    for k in t.key:
        c, v = t.by_name[k], row.get(k)
        if v is None or (isinstance(v, float) and v != v) or not str(v).strip():
            out.append(c.default or "")
            continue
        if c.type in ("int", "float"):
            try:
                out.append(key_text_cell(c, v))
                continue
            except (TypeError, ValueError, OverflowError):
                pass
        out.append(str(v))
    return "\x1f".join(out)


def _blanks(cells):
    """Which cells of a column are empty or only spaces, vectorized (numpy's string functions, no Python loop)."""
    import numpy as np

    na = cells.isna().to_numpy().copy()
    if (~na).any():
        text = cells[~na].astype(str).to_numpy().astype(str)
        na[~na] = np.char.str_len(np.char.strip(text)) == 0
    return na


def key_column(kind: str, df):
    """Every row's key_text of the `kind` table `df` (cells as read), as one joined string a row, vectorized: the
    same strings '\x1f'.join(key_text(kind, row)) gives, for a table of 10^5 rows in a fraction of a second."""
    import numpy as np
    import pandas as pd

    t = TABLES[kind]
    parts = []
    for k in t.key:
        c = t.by_name[k]
        cells = df[k] if k in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)
        blank = _blanks(cells)
        out = pd.Series(np.where(blank, c.default or "", ""), index=df.index, dtype=object)
        if c.type in ("int", "float"):
            num = pd.to_numeric(cells.where(~blank), errors="coerce")
            spell = [key_text_cell(c, v) for v in num.where(num.notna(), None)]
            out = out.where(blank, pd.Series(spell, index=df.index, dtype=object))
            bad = ~blank & num.isna().to_numpy()  # not a number: kept as written (the check names it)
            out[bad] = cells[bad].astype(str)
        else:
            out = out.where(blank, cells.astype(str))
        parts.append(out.astype(str))
    joined = parts[0]
    for p in parts[1:]:
        joined = joined + "\x1f" + p
    return joined


def key_text_cell(c: tables.Column, v) -> str:
    f = float(v)
    return str(int(f)) if c.type == "int" and f.is_integer() else repr(f)


def _text(v, column=None):
    """A recorded value as the CSV's cell holds it: an integer column's 6.0 is '6'."""
    if v is None or (isinstance(v, float) and v != v):
        return None
    if column is not None and column.type == "int" and isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _entries(path: Path, kind: str) -> tuple[dict, dict]:
    """The table's journal applied in order: (key -> the row it holds now, as text cells; key -> the attempt
    columns to set on the CSV's row of that key)."""
    entries, _ = read_journal(journal(path))
    rows, attempts = {}, {}
    declared = TABLES[kind].by_name
    for e in entries:
        if "row" in e:
            k = key_text(kind, e["row"])
            rows.pop(k, None)
            attempts.pop(k, None)
            rows[k] = {c: _text(v, declared.get(c)) for c, v in e["row"].items()}
        else:
            k = key_text(kind, e["attempt"])
            a = {c: _text(e["attempt"].get(c)) for c in ATTEMPT}
            (rows[k].update(a) if k in rows else attempts.__setitem__(k, a))
    return rows, attempts


def _fold(path: Path, df, kind: str, folded=None):
    """`df` (the CSV's cells as text) with the table's journal applied in order."""
    import pandas as pd

    rows, attempts = folded or _entries(path, kind)
    if not rows and not attempts:
        return df
    if len(df):
        keys = key_column(kind, df)  # a key column an older file lacks holds its default (or the check names it)
        keep = ~keys.isin(rows.keys()).to_numpy()
        df, keys = df[keep].copy(), keys[keep]
        for i in keys.index[keys.isin(attempts.keys())]:
            for c, v in attempts[keys[i]].items():
                df.loc[i, c] = v
    new = pd.DataFrame(list(rows.values()), dtype=object)
    return pd.concat([df, new], ignore_index=True) if len(df) else new


def _key_order(kind: str, df):
    """The positions of `df`'s rows sorted by key (numbers as numbers, a missing cell as its default)."""
    import pandas as pd

    t, order = TABLES[kind], {}
    for k in t.key:
        c = t.by_name[k]
        cells = df[k].fillna(c.default or "") if k in df else pd.Series(c.default or "", index=df.index)
        order[k] = pd.to_numeric(cells, errors="coerce") if c.type in ("int", "float") else cells.astype(str)
    return pd.DataFrame(order).reset_index(drop=True).sort_values(list(t.key), kind="stable").index.to_numpy()


def compacted_text(path, kind: str) -> str:
    """The CSV text of the `kind` table at `path` with its journal folded in, sorted by key. The CSV's own lines
    are moved, not re-written (no number is re-spelled, nothing is parsed but the key), so compacting a table of
    10^5 rows costs a fraction of a second; a journal that brings a new column (or a CSV whose cells span lines)
    takes the full rewrite."""
    import pandas as pd

    path = Path(path)
    raw = path.read_text(encoding="utf-8") if path.is_file() and path.stat().st_size else ""
    rows, attempts = folded = _entries(path, kind)
    lines = raw.split("\n")
    header = next(csv.reader(lines[:1]), [])
    key = list(TABLES[kind].key)
    only = None if attempts or not set(key) <= set(header) else (lambda c: c in key)  # the keys are all it needs
    df = pd.read_csv(io.StringIO(raw), keep_default_na=False, na_values=[""], dtype=str, usecols=only) if raw else (
        pd.DataFrame())  # fmt: skip
    new = pd.DataFrame(list(rows.values()), dtype=object)
    fits = (
        raw.endswith("\n") and len(lines) == len(df) + 2 and len(df)
        and set(new.columns) <= set(header) and (not attempts or set(ATTEMPT) <= set(header))
        and not new.map(lambda v: isinstance(v, str) and ("\n" in v or "\r" in v)).to_numpy().any()
    )  # fmt: skip
    if not fits:
        if only is not None:
            df = pd.read_csv(io.StringIO(raw), keep_default_na=False, na_values=[""], dtype=str) if raw else df
        df = _fold(path, df, kind, folded)
        if not len(df):
            return to_csv(empty_table(kind), kind)
        return df.iloc[_key_order(kind, df)].to_csv(index=False)
    keep = ~key_column(kind, df).isin(rows.keys()).to_numpy()
    body = [line for line, k in zip(lines[1:-1], keep) if k]
    kept = df[keep].reset_index(drop=True)
    ks = key_column(kind, kept)
    touched = ks.index[ks.isin(attempts.keys())]
    if len(touched):  # the kept good rows that record a later attempt: those lines are written anew
        for i in touched:
            for c, v in attempts[ks[i]].items():
                kept.loc[i, c] = v
        for i, line in zip(touched, kept.loc[touched].to_csv(index=False, header=False).split("\n")):
            body[i] = line
    if len(new):
        body += new.reindex(columns=header).to_csv(index=False, header=False).split("\n")[:-1]
    keyed = pd.concat([kept.reindex(columns=key), new.reindex(columns=key)], ignore_index=True)
    return "\n".join([lines[0], *(body[i] for i in _key_order(kind, keyed))]) + "\n"


def empty_table(kind: str):
    """A table with no rows and its declared columns, typed as read_table types them."""
    import pandas as pd

    dtype = {"int": "int64", "float": "float64"}
    return pd.DataFrame({c.name: pd.Series(dtype=dtype.get(c.type, "object")) for c in TABLES[kind].columns})


def _bool(v):
    s = str(v).strip().lower()
    return True if s in _TRUE else False if s in _FALSE else None


def _check_table(path: Path, df, kind: str):
    """Check every declared cell of `df` (as read: text) and type it; a defect is one UserError naming the line."""
    import numpy as np
    import pandas as pd

    table = TABLES[kind]
    for c in table.columns:
        if c.default is not None:
            df[c.name] = df[c.name].fillna(c.default) if c.name in df.columns else c.default
    upgrade_hosts(df)
    lacking = [c for c in table.required_columns if c not in df.columns]
    if lacking:
        needs = ", ".join(table.required_columns)
        raise UserError(f"{path}: lacks the column(s) {', '.join(lacking)} (a {kind} table needs {needs})")
    ok = df["status"].eq("ok").to_numpy() if "status" in df.columns else np.zeros(len(df), bool)
    cols = [c for c in table.columns if c.name in df.columns]
    values = df[[c.name for c in cols]].to_numpy(dtype=object)
    blanks, nums = np.zeros(values.shape, bool), np.full(values.shape, np.nan)
    for j, c in enumerate(cols):  # vectorized a column; only cells that may be all spaces are looked at one by one
        cells = df[c.name]
        blank = cells.isna().to_numpy().copy()
        if c.type in ("int", "float"):
            num = pd.to_numeric(cells, errors="coerce").to_numpy(np.float64)
            odd = np.flatnonzero(~blank & np.isnan(num))
        elif c.required or c.ok or c.name in table.key or c.type != "text":
            blank, odd = _blanks(cells), ()
        else:
            odd = ()  # an optional text column: a blank cell and a cell of spaces are both fine
        for i in odd:
            blank[i] = _blank(values[i, j])
        blanks[:, j] = blank
        if c.type in ("int", "float"):
            nums[:, j] = np.where(blank, np.nan, num)
    for j, c in enumerate(cols):
        blank = blanks[:, j]
        must = np.ones(len(df), bool) if (c.required or c.name in table.key) and c.default is None else ~blank
        if c.ok:
            must = must | ok
        bad = must & blank
        cell = None
        if c.type in ("int", "float"):
            num = nums[:, j]
            bad = bad | (~blank & (~np.isfinite(num) if c.finite else np.isnan(num)))
            if c.type == "int":
                with np.errstate(invalid="ignore"):
                    bad = bad | (~blank & np.isfinite(num) & ((num % 1 != 0) | (num < c.low) | (num >= 2.0**63)))
        elif c.type == "bool":
            cell = _cells(values[:, j], _bool, object)
            bad = bad | (~blank & np.equal(cell, None))
        elif c.type == "enum":
            bad = bad | (~blank & ~np.isin(values[:, j].astype(str), c.values))
        if bad.any():
            i = int(bad.nonzero()[0][0])
            what = "an empty" if bool(blank[i]) else f"an invalid {c.type}"
            raise UserError(
                f"{path}: line {i + 2} has {what} value in column {c.name!r} ({str(values[i, j])[:40]!r}); "
                f"{int(bad.sum())} row(s) are damaged"
            )
        if c.type in ("int", "float"):
            num = np.where(blank, np.nan, nums[:, j])
            typed = "int64" if c.type == "int" and not blank.any() else "float64"
            df[c.name] = pd.Series(num, index=df.index).astype(typed)
        elif cell is not None:
            df[c.name] = pd.Series(cell, index=df.index, dtype=object)
    lacking = {c.name: float("nan") if c.type in ("int", "float") else None for c in table.columns if c.name not in df}
    if lacking:  # a column an older (or hand-made) file lacks reads as empty cells
        df = pd.concat([df, pd.DataFrame(lacking, index=df.index)], axis=1)
    return df


def to_csv(table, kind: str) -> str:
    """`table` as the CSV text of a `kind` table: integers without a decimal point (6, not 6.0), booleans as
    True/False, empty cells empty."""
    import pandas as pd

    out = table.copy()
    declared = TABLES[kind].by_name
    for col in out.columns:
        c = declared.get(col)
        if c is None or c.type != "int":
            continue
        num = pd.to_numeric(out[col], errors="coerce")
        whole = num.notna() & (num % 1 == 0)
        if whole.any() and (whole | out[col].isna() | out[col].astype(str).str.strip().eq("")).all():
            out[col] = num.astype("Int64")
    return out.to_csv(index=False)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


# ---------------------------------------------------------------- JSON records

# (dotted key, kind): "num" a finite number, "int", "str", "dict", "list"
RECORD = [
    ("model", "str"),
    ("device", "str"),
    ("environment.host", "str"),
    ("spec.params", "int"),
    ("spec.task", "str"),
    ("spec.dataset", "str"),
    ("recipe.epochs", "int"),
    ("final.train", "dict"),
    ("final.val", "dict"),
    ("overfitting.metric", "str"),
    ("overfitting.min_val_loss_epoch", "int"),
    ("overfitting.min_val_loss", "num"),
    ("overfitting.best_val_epoch", "int"),
    ("overfitting.best_val_metric", "num"),
    ("overfitting.final_val_loss", "num"),
    ("timings.train_s", "num"),
    ("timings.epoch_s_mean", "num"),
    ("history", "list"),
]
SPEED = [
    ("device", "str"),
    ("environment.host", "str"),
    ("trainer_epoch_s", "list"),
    ("bare_epoch_s", "list"),
    ("ratio_train_pass", "num"),
]


MODEL_RECORD = [
    ("key", "str"),
    ("slug", "str"),
    ("name", "str"),
    ("origin", "str"),
    ("sha256", "str"),
    ("opset", "int"),
    ("inputs", "list"),
    ("outputs", "list"),
    ("checked_on", "str"),
    ("unknown_ops", "list"),
    ("info", "dict"),
    ("host", "str"),
]


def read_model_record(path) -> dict:
    """A profiled model's record (data/models/<slug>.json), checked; its key must hold ':' (never a zoo id)."""
    obj = _read_json(path)
    _check_keys(path, obj, MODEL_RECORD)
    upgrade_environment(obj)
    if ":" not in obj["key"]:
        raise UserError(f"{path}: key {obj['key']!r} is not a profiled model's key (<origin>:<name>@<digest>)")
    if obj["slug"] != Path(path).stem:  # the slug names the appendix written from it: never a path of its own
        raise UserError(f"{path}: its slug {str(obj['slug'])[:80]!r} is not its file name {Path(path).stem!r}")
    for i, t in enumerate(obj["inputs"]):
        _check_keys(path, t, [("name", "str"), ("type", "str"), ("row", "list")], f"inputs[{i}].")
    return obj


def read_record(path) -> dict:
    """A training record (train_<id>.json or gpu_train_<id>.json), checked: keys, types, and every epoch of
    its history holding train_loss, val_loss and the validation metric. A defect raises UserError naming it."""
    obj = _read_json(path)
    _check_keys(path, obj, RECORD)
    upgrade_environment(obj["environment"])
    m = obj["overfitting"]["metric"]
    for key in (f"final.val.{m}", f"final.train.{m}"):
        _check_keys(path, obj, [(key, "num")])
    if not obj["history"]:
        raise UserError(f"{path}: its history is empty")
    for i, h in enumerate(obj["history"]):
        _check_keys(
            path,
            h,
            [("epoch", "int"), ("train_loss", "num"), ("val_loss", "num"), (f"val_{m}", "num")],
            f"history[{i}].",
        )
    return obj


def read_speed(path) -> dict:
    """A training-speed record (train_speed_<where>.json), checked; a defect raises UserError naming it."""
    obj = _read_json(path)
    _check_keys(path, obj, SPEED)
    upgrade_environment(obj["environment"])
    for key in ("trainer_epoch_s", "bare_epoch_s"):
        if not obj[key] or not all(_is_num(v) and v > 0 for v in obj[key]):
            raise UserError(f"{path}: {key} must be a non-empty list of positive seconds")
    return obj


# entries of limits_/nodes_/lifecycle_<host>.json: (dotted key, kind) every entry must hold
PROFILE_ENTRY = {
    "fidelity": [("timestamp", "str"), ("single_call", "dict"), ("load", "dict")],
    "limits": [("timestamp", "str"), ("threads", "int"), ("items", "list"), ("command", "str")],
    "nodes": [
        ("model", "str"),
        ("runtime", "str"),
        ("precision", "str"),
        ("scope", "str"),
        ("batch", "int"),
        ("unprofiled.p50_us", "num"),
        ("profiled.p50_us", "num"),
        ("call.nodes_us", "num"),
        ("call.between_us", "num"),
        ("call.outside_us", "num"),
        ("nodes", "list"),
    ],
    "lifecycle": [("model", "str"), ("runtime", "str"), ("precision", "str"), ("status", "str")],
}
# what each item/node of those entries must hold
PROFILE_ITEM = {
    "limits": ("items", [("kind", "str"), ("status", "str")]),
    "nodes": ("nodes", [("node", "str"), ("op", "str"), ("p50_us", "num"), ("covers", "list")]),
}


def read_profile_record(path, kind: str) -> dict:
    """A limits_/nodes_/lifecycle_<host>.json record, checked: kind, host, environment and every entry (and
    its items or nodes). A defect raises UserError naming the file and the entry."""
    obj = _read_json(path)
    _check_keys(path, obj, [("kind", "str"), ("host", "str"), ("environment", "dict"), ("entries", "list")])
    upgrade_environment(obj["environment"], obj)
    if obj["kind"] != kind:
        raise UserError(f"{path}: holds a {obj['kind']!r} record, expected {kind!r}")
    for i, e in enumerate(obj["entries"]):
        if not isinstance(e, dict):
            raise UserError(f"{path}: entries[{i}] is not an object")
        _check_keys(path, e, PROFILE_ENTRY[kind], f"entries[{i}].")
        if kind in PROFILE_ITEM:
            field, keys = PROFILE_ITEM[kind]
            for j, item in enumerate(e[field]):
                if not isinstance(item, dict):
                    raise UserError(f"{path}: entries[{i}].{field}[{j}] is not an object")
                _check_keys(path, item, keys, f"entries[{i}].{field}[{j}].")
    return obj


def _read_json(path) -> dict:

    return read_json(path)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_KINDS = {
    "num": _is_num,
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "dict": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
}


def _check_keys(path, obj: dict, keys, prefix: str = ""):
    for dotted, kind in keys:
        v = obj
        for part in dotted.split("."):
            if not isinstance(v, dict) or part not in v:
                raise UserError(f"{path}: lacks the key {prefix}{dotted}")
            v = v[part]
        if not _KINDS[kind](v):
            raise UserError(
                f"{path}: {prefix}{dotted} should be a {'number' if kind == 'num' else kind}, got {str(v)[:40]!r}"
            )


# ---------------------------------------------------------------- machines written before fingerprints

UNKNOWN = "unknown-"  # the host id the migration gives results whose machine cannot be told apart any more
FINGERPRINT_ID = re.compile(r"[0-9a-f]{12}")  # rtml_profile.host.fingerprint_id


def unknown(host) -> bool:
    """Is `host` anything but a machine fingerprint id (a result written before machines were fingerprinted)?"""
    return not FINGERPRINT_ID.fullmatch(str(host))


def unknown_machine(host: str) -> tuple[str, str]:
    """(host id, host_label) for a result written before machines were fingerprinted (rtml_profile.host): its
    host was a CPU name and a count ('2x AMD EPYC') that different machines shared, so which machine measured it
    is unknown. The id ('unknown-2x-AMD-EPYC') can never equal a fingerprint id (12 hex digits): such results
    are never mixed with a known machine's, nor compared with them."""
    was = str(host).removeprefix(UNKNOWN)
    short = " ".join(re.sub(r"\((R|TM)\)|\bNVIDIA\b|\bProcessor\b", "", was).split())
    short = re.sub(r"\b(\d+)x (?=[A-Z])", r"\1-core ", short.split(" / ")[0])  # '2x AMD EPYC': cores, not sockets
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", was).strip("-")[:80] or "x"
    return f"{UNKNOWN}{slug}", f"{short}, unknown machine"


def upgrade_hosts(df):
    """In place: rows of a table that carry no host_label (written before fingerprints) are labelled as an
    unknown machine (their host, the key, is kept; the migration renames it)."""
    if "host" not in df.columns:
        return df
    if "host_label" not in df.columns:
        df["host_label"] = ""
    blank = df["host_label"].isna() | df["host_label"].astype(str).str.strip().eq("")
    if blank.any():
        hosts = df.loc[blank, "host"]
        df.loc[blank, "host_label"] = hosts.map({h: unknown_machine(h)[1] for h in hosts.unique()})
    return df


def upgrade_environment(env: dict, record: dict | None = None):
    """In place: an environment written before fingerprints is labelled as an unknown machine."""
    host = env.get("host", (record or {}).get("host"))
    if host is not None and not str(env.get("host_label") or "").strip():
        env["host_label"] = unknown_machine(host)[1]


# ---------------------------------------------------------------- raw samples


def read_samples(path) -> dict:
    """{'runtime|precision|scope|batch': samples in us} from a samples .npz, each array checked.

    A file that is not a readable npz, or holds an array that is not a non-empty 1-D list of finite,
    non-negative latencies, raises UserError naming the file and the entry.
    """

    try:
        data = read_npz(path, "samples file")
    except UserError as e:
        raise UserError(f"{path}: not a readable samples file ({str(e).removeprefix(f'{path} ')})") from None
    for k, v in data.items():
        check_samples(v, f"{path} [{k}]")
    return data


def check_samples(arr, where: str):
    """`arr` as a float array of latencies if it is 1-D, non-empty, finite and non-negative; else UserError."""
    import numpy as np

    a = np.asarray(arr)
    if a.ndim != 1 or a.size == 0 or a.dtype.kind not in "iuf" or not np.isfinite(a).all() or (a < 0).any():
        raise UserError(
            f"{where}: damaged latency samples (need a non-empty 1-D array of finite, non-negative "
            f"numbers; got shape {a.shape}, dtype {a.dtype})"
        )
    return a.astype(np.float64)
