"""What each result file must hold, and readers that check it: a defect is one sentence naming the file.

Result files (reports/data/): bench.csv and analysis.csv (tables), train_<id>.json and gpu_train_<id>.json
(training records), train_speed_<where>.json (training-speed benchmarks), samples/**.npz (raw latencies in us).
Columns or keys beyond the schema are kept: writers may add new ones without breaking readers.
Every reader raises `rtml_profile.UserError("<path>: <problem>")` on a defect; nothing else escapes.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from rtml_profile import UserError

KEYS = {
    "bench": ["host", "model", "runtime", "precision", "variant", "scope", "batch"],
    "analysis": ["model", "batch", "node"],
    "precision_nodes": ["host", "model", "precision", "calibration_method", "node"],
    "precision_fixes": ["host", "model", "precision", "calibration_method", "kept_fp32"],
}


@dataclass(frozen=True)
class TableSchema:
    """Columns a table must have, their kinds ('str' | 'int' | 'float'), and those that may be empty."""

    columns: dict[str, str]
    optional: frozenset[str] = frozenset()  # may be empty in a row
    ok_required: frozenset[str] = frozenset()  # must be filled in rows whose status is "ok"
    defaults: tuple[tuple[str, str], ...] = ()  # (column, value) for a column older files lack or leave blank


_LATENCY = ("n", "mean_us", "p50_us", "p99_us", "throughput_sps")
_PREPARE = (
    "load_s",
    "prepare_s",
    "compile_first_s",
    "compile_cold_s",
    "compile_cached_s",
    "calibration_rows",
    "calibration_seed",
    "tune_gain",
    "tune_default_p50_us",
    "tune_tried",
    "tune_s",
    "trained_epochs",
)
_NODE_NUM = ("order", "rel_error", "max_abs_error", "added_error", "tolerance")
_FIX_NUM = ("excluded", "metric_value", "eval_rows", "p50_us", "fp32_metric_value", "fp32_p50_us", "prepare_s")
TABLES = {
    "bench": TableSchema(
        columns={
            "host": "str",
            "model": "str",
            "runtime": "str",
            "precision": "str",
            "variant": "str",
            "scope": "str",
            "batch": "int",
            "status": "str",
            **{c: "float" for c in _LATENCY},
            **{
                c: "float"
                for c in (
                    "std_us",
                    "cv",
                    "min_us",
                    "max_us",
                    "p90_us",
                    "p95_us",
                    "metric_value",
                    "eval_rows",
                    "parity_max_abs_diff",
                    "parity_tolerance",
                    "parity_class_agreement",
                    *_PREPARE,
                )
            },
        },
        optional=frozenset(
            {
                *_LATENCY,
                *_PREPARE,
                "variant",
                "std_us",
                "cv",
                "min_us",
                "max_us",
                "p90_us",
                "p95_us",
                "metric_value",
                "eval_rows",
                "parity_max_abs_diff",
                "parity_tolerance",
                "parity_class_agreement",
            }
        ),
        ok_required=frozenset(_LATENCY),
        defaults=(("variant", ""),),
    ),
    "analysis": TableSchema(columns={"model": "str", "batch": "int", "node": "str", "macs": "float", "params": "int"}),
    "precision_nodes": TableSchema(
        columns={**{k: "str" for k in KEYS["precision_nodes"]}, "op": "str", **{c: "float" for c in _NODE_NUM}},
        optional=frozenset({"added_error"}),
        defaults=(("calibration_method", ""),),
    ),
    "precision_fixes": TableSchema(
        columns={**{k: "str" for k in KEYS["precision_fixes"]}, **{c: "float" for c in _FIX_NUM}},
        optional=frozenset({"metric_value", "eval_rows", "fp32_metric_value", "prepare_s"}),
        defaults=(("calibration_method", ""), ("kept_fp32", "")),
    ),
}
# Columns a file must contain (the rest of `columns` is checked only when present: older files lack some).
_MUST = {
    "bench": [*KEYS["bench"], "status"],
    "analysis": ["model", "batch", "node", "macs", "params"],
    "precision_nodes": [*KEYS["precision_nodes"], "op", *_NODE_NUM],
    "precision_fixes": [*KEYS["precision_fixes"], *_FIX_NUM],
}


def read_table(path, kind: str, allow_empty: bool = True):
    """`path` (bench.csv or analysis.csv, by `kind`) as a validated DataFrame.

    A missing or 0-byte file gives an empty DataFrame with the schema's columns (unless `allow_empty` is False,
    then a 0-byte file is a defect). Integer columns come back as int64, numeric ones as float64; extra columns
    are kept as read. Any defect raises UserError("<path>: <problem>").
    """
    import pandas as pd

    schema = TABLES[kind]
    path = Path(path)
    empty = pd.DataFrame(
        {
            c: pd.Series(dtype="int64" if k == "int" else "float64" if k == "float" else "object")
            for c, k in schema.columns.items()
        }
    )
    if not path.is_file():
        if path.exists():
            raise UserError(f"{path}: not a file")
        return empty
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
    try:
        df = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""], dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise UserError(f"{path}: not a readable CSV table ({_first_line(e)})") from None
    return _check_table(path, df, kind)


def _check_table(path: Path, df, kind: str):
    import pandas as pd

    schema = TABLES[kind]
    for col, value in schema.defaults:
        df[col] = df[col].fillna(value) if col in df.columns else value
    lacking = [c for c in _MUST[kind] if c not in df.columns]
    if lacking:
        raise UserError(
            f"{path}: lacks the column(s) {', '.join(lacking)} (a {kind} table needs {', '.join(_MUST[kind])})"
        )
    ok = df["status"].eq("ok") if "status" in df.columns else pd.Series(False, index=df.index)
    for col, typ in schema.columns.items():
        if col not in df.columns:
            continue
        raw = df[col]
        blank = raw.isna() | raw.astype(str).str.strip().eq("")
        may_blank = col in schema.optional or col in dict(schema.defaults)
        must = ~blank if may_blank else pd.Series(True, index=df.index)
        if col in schema.ok_required:
            must = must | ok
        bad = must & blank
        if typ != "str":
            num = pd.to_numeric(raw.where(~blank), errors="coerce")
            bad = bad | (~blank & ~num.map(lambda v: isinstance(v, (int, float)) and math.isfinite(v)))
            if typ == "int":
                bad = bad | (~blank & num.notna() & ((num % 1 != 0) | (num < 1 if col == "batch" else num < 0)))
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            what = "an empty" if bool(blank.iloc[i]) else f"an invalid {typ}"
            raise UserError(
                f"{path}: line {i + 2} has {what} value in column {col!r} ({str(raw.iloc[i])[:40]!r}); "
                f"{int(bad.sum())} row(s) are damaged"
            )
        if typ != "str":
            num = pd.to_numeric(raw.where(~blank), errors="coerce")
            df[col] = num.astype("int64") if typ == "int" and not blank.any() else num.astype("float64")
    return df


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


def read_record(path) -> dict:
    """A training record (train_<id>.json or gpu_train_<id>.json), checked: keys, types, and every epoch of
    its history holding train_loss, val_loss and the validation metric. A defect raises UserError naming it."""
    obj = _read_json(path)
    _check_keys(path, obj, RECORD)
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
    for key in ("trainer_epoch_s", "bare_epoch_s"):
        if not obj[key] or not all(_is_num(v) and v > 0 for v in obj[key]):
            raise UserError(f"{path}: {key} must be a non-empty list of positive seconds")
    return obj


def _read_json(path) -> dict:
    from rtml_profile.files import read_json

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


# ---------------------------------------------------------------- raw samples


def read_samples(path) -> dict:
    """{'runtime|precision|scope|batch': samples in us} from a samples .npz, each array checked.

    A file that is not a readable npz, or holds an array that is not a non-empty 1-D list of finite,
    non-negative latencies, raises UserError naming the file and the entry.
    """
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise UserError(f"{path}: not a readable samples file ({type(e).__name__}: {_first_line(e)})") from None
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
