"""What each result file must hold, and readers that check it: a defect is one sentence naming the file.

Result files (reports/data/): bench.csv and analysis.csv (tables), train_<id>.json and gpu_train_<id>.json
(training records), train_speed_<where>.json (training-speed benchmarks), samples/**.npz (raw latencies in us),
limits_<host>.json, nodes_<host>.json and lifecycle_<host>.json (where the time goes: rtml_profile.scenarios.where).
Columns or keys beyond the schema are kept: writers may add new ones without breaking readers.
Every reader raises `rtml_profile.UserError("<path>: <problem>")` on a defect; nothing else escapes.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from rtml_profile import UserError, paths
from rtml_profile.files import read_json, read_npz

KEYS = {
    "bench": ["host", "model", "runtime", "precision", "variant", "scope", "batch"],
    "analysis": ["model", "batch", "node"],
    "checks": ["host", "model", "runtime", "precision", "output"],
    "load": ["host", "model", "runtime", "precision", "scenario", "max_batch", "max_wait_us", "deadline_us",
             "offered_qps", "settings"],
    "precision_nodes": ["host", "model", "precision", "calibration_method", "node"],
    "precision_fixes": ["host", "model", "precision", "calibration_method", "kept_fp32"],
}  # fmt: skip
FILES = {
    "bench": paths.BENCH_CSV,
    "analysis": paths.ANALYSIS_CSV,
    "load": paths.LOAD_CSV,
    "checks": paths.CHECKS_CSV,
    "precision_nodes": paths.PRECISION_NODES_CSV,
    "precision_fixes": paths.PRECISION_FIXES_CSV,
}


@dataclass(frozen=True)
class TableSchema:
    """Columns a table must have, their kinds ('str' | 'int' | 'float'), and those that may be empty."""

    columns: dict[str, str]
    optional: frozenset[str] = frozenset()  # may be empty in a row
    ok_required: frozenset[str] = frozenset()  # must be filled in rows whose status is "ok"
    defaults: tuple[tuple[str, str], ...] = ()  # (column, value) for a column older files lack or leave blank


_LATENCY = ("n", "mean_us", "p50_us", "p99_us", "throughput_sps")
_STATS = ("std_us", "cv", "min_us", "max_us", "p90_us", "p95_us", "metric_value", "eval_rows", "parity_max_abs_diff",
          "parity_tolerance", "parity_class_agreement")  # fmt: skip
_CHECK_STATS = (
    *("max_abs", "mean_abs", "p99_abs", "max_rel", "mean_rel", "p99_rel", "ref_max_abs", "elements", "nan", "inf"),
    *("new_nonfinite", "worst_value", "worst_reference", "atol", "rtol", "bound", "checked"),
    *("top1", "top5", "decisive_rows", "top1_decisive", "min_agreement"),
)
_LOAD_RESULTS = (
    "n", "p50_us", "p99_us", "p99_lo_us", "p99_hi_us", "miss_rate", "miss_lo", "miss_hi", "achieved_qps",
    "issue_p50_us", "issue_p99_us", "issue_max_us", "growth", "mean_batch", "pred_p99_us", "pred_miss_rate",
    "kept_up", "call_p50_us", "b2b_p50_us", "pred_own_p99_us", "loadgen_p99_us", "loadgen_qps", "call_ratio",
)  # fmt: skip
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
_QUIET = ("loadavg_1m", "window_s", "others_cpu_s", "others_cores")  # host.Quiet; 'busy' is yes / no / ''
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
            **{c: "float" for c in _STATS},
            **{c: "float" for c in _PREPARE},
            **{c: "float" for c in _QUIET},
            "host_label": "str",
            "busy": "str",
        },
        optional=frozenset({*_LATENCY, *_STATS, *_PREPARE, *_QUIET, "variant", "busy"}),
        ok_required=frozenset(_LATENCY),
        defaults=(("variant", ""),),
    ),
    "analysis": TableSchema(columns={"model": "str", "batch": "int", "node": "str", "macs": "float", "params": "int"}),
    # output checks of profiled models; statistics are empty where the output could not be compared at all
    "checks": TableSchema(
        columns={
            **{c: "str" for c in KEYS["checks"]},
            "ok": "str",
            **{c: "float" for c in _CHECK_STATS},
        },
        optional=frozenset(_CHECK_STATS),
    ),
    # one row per load run (load.py): latencies are completion minus scheduled arrival, in microseconds
    "load": TableSchema(
        columns={
            **{c: "str" for c in ("host", "model", "runtime", "precision", "scenario", "status", "role")},
            "max_batch": "int",
            **{c: "float" for c in ("max_wait_us", "deadline_us", "offered_qps")},
            **{c: "float" for c in _LOAD_RESULTS},
            **{c: "float" for c in _QUIET},
            "late": "int",
            "host_label": "str",
            "busy": "str",
        },
        optional=frozenset({*_LOAD_RESULTS, *_QUIET, "late", "role", "busy"}),
        defaults=(("settings", ""),),
        ok_required=frozenset({"n", "p50_us", "p99_us", "miss_rate", "issue_p99_us", "achieved_qps"}),
    ),
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
    "checks": [*KEYS["checks"], "ok"],
    "load": [*KEYS["load"], "status"],
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


def _number(v) -> float:
    """A cell as pandas.to_numeric(errors='coerce') reads it (NaN when it is not a number)."""
    if isinstance(v, (int, float)):
        return float(v)
    s = str(v).strip()
    if "_" in s:  # float() accepts '1_000', pandas does not
        return float("nan")
    try:
        return float(s)
    except ValueError:
        return float("nan")


def _check_table(path: Path, df, kind: str):
    import numpy as np
    import pandas as pd

    schema = TABLES[kind]
    for col, value in schema.defaults:
        df[col] = df[col].fillna(value) if col in df.columns else value
    upgrade_hosts(df)
    lacking = [c for c in _MUST[kind] if c not in df.columns]
    if lacking:
        raise UserError(
            f"{path}: lacks the column(s) {', '.join(lacking)} (a {kind} table needs {', '.join(_MUST[kind])})"
        )
    ok = df["status"].eq("ok").to_numpy() if "status" in df.columns else np.zeros(len(df), bool)
    cols = [c for c in schema.columns if c in df.columns]
    values = df[cols].to_numpy(dtype=object)
    blanks = _cells(values, _blank, bool).reshape(values.shape)
    numeric = [j for j, c in enumerate(cols) if schema.columns[c] != "str"]
    nums = np.full(values.shape, np.nan)
    if numeric:
        nums[:, numeric] = _cells(values[:, numeric], _number, np.float64).reshape(len(df), len(numeric))
    defaults = dict(schema.defaults)
    for j, col in enumerate(cols):
        typ, blank = schema.columns[col], blanks[:, j]
        must = ~blank if col in schema.optional or col in defaults else np.ones(len(df), bool)
        if col in schema.ok_required:
            must = must | ok
        bad = must & blank
        if typ != "str":
            num = nums[:, j]
            finite = np.isfinite(num)
            bad = bad | (~blank & ~finite)
            if typ == "int":
                low = 1 if col == "batch" else 0
                with np.errstate(invalid="ignore"):
                    bad = bad | (~blank & finite & ((num % 1 != 0) | (num < low) | (num >= 2.0**63)))
        if bad.any():
            i = int(bad.nonzero()[0][0])
            what = "an empty" if bool(blank[i]) else f"an invalid {typ}"
            raise UserError(
                f"{path}: line {i + 2} has {what} value in column {col!r} ({str(values[i, j])[:40]!r}); "
                f"{int(bad.sum())} row(s) are damaged"
            )
        if typ != "str":
            num = np.where(blank, np.nan, nums[:, j])
            df[col] = pd.Series(num, index=df.index).astype("int64" if typ == "int" and not blank.any() else "float64")
    for col, typ in schema.columns.items():  # a column an older (or hand-made) file lacks reads as empty cells
        if col not in df.columns:
            df[col] = float("nan") if typ != "str" else None
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
        df.loc[blank, "host_label"] = [unknown_machine(h)[1] for h in df.loc[blank, "host"]]
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
