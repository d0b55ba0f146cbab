"""Everything the report reads, loaded once through the validating readers of `rtml_profile.schema`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rtml_profile import UserError, paths, schema, zoo
from rtml_profile.files import read_npz
from rtml_profile.host import FACTS
from rtml_profile.results import PROFILE_KINDS, load_sample_arrays, load_samples, samples_path
from rtml_profile.views import one_row_per_key

CONFIG = ["runtime", "precision", "variant", "scope"]  # one way of running a model on a host


@dataclass
class Inputs:
    """The validated result files of one data folder."""

    data_dir: Path
    records: dict = field(default_factory=dict)  # model id -> train_<id>.json
    extras: dict = field(default_factory=dict)  # file stem -> gpu_train_*.json / train_speed_*.json
    analysis: object = None  # DataFrame: the TOTAL row per model at batch 1
    bench: object = None  # DataFrame: every row of known models
    analysis_nodes: object = None  # DataFrame: every node row of analysis.csv at batch 1 (no TOTAL rows)
    profiles: dict = field(default_factory=dict)  # "limits" | "nodes" | "lifecycle" -> {host: record}
    load: object = None  # DataFrame: load.csv rows (open-loop load runs) of known models
    nodes: object = None  # DataFrame: precision_nodes.csv (per-node error of reduced-precision variants)
    fixes: object = None  # DataFrame: precision_fixes.csv (nodes kept in fp32: accuracy and latency)
    machines: dict = field(default_factory=dict)  # host (fingerprint id) -> its facts and host_label
    _samples: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)  # a row's predictions_file -> {'pred', 'y'}, read with the rest
    memo: dict = field(default_factory=dict)  # results several sections ask for, computed once (by the asker's key)

    @property
    def macs(self) -> dict:
        """model id -> MACs per sample (analysis TOTAL row at batch 1)."""
        return {} if self.analysis is None else dict(zip(self.analysis["model"], self.analysis["macs"]))

    @property
    def ok(self):
        """Bench rows that measured something (status ok)."""
        return None if self.bench is None else self.bench[self.bench["status"] == "ok"]


def models(inp: Inputs) -> list[str]:
    """Zoo models present in any result file, in zoo order."""
    seen = set(inp.records) | set(inp.macs) | (set(inp.bench["model"]) if inp.bench is not None else set())
    return [m for m in zoo.MODELS if m in seen]


def load_inputs(data_dir) -> Inputs:
    """Read and validate every result file in `data_dir`. A folder that does not exist or holds no result file
    raises UserError, so a typo never renders an empty report over a good one."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: no such data folder (it should hold bench.csv, analysis.csv, train_<id>.json)")
    inp = Inputs(data_dir)
    for mid in zoo.MODELS:
        p = data_dir / f"train_{mid}.json"
        if p.is_file():
            inp.records[mid] = schema.read_record(p)
    for p in sorted(data_dir.glob("gpu_train_*.json")):
        inp.extras[p.stem] = schema.read_record(p)
    for p in sorted(data_dir.glob("train_speed_*.json")):
        inp.extras[p.stem] = schema.read_speed(p)
    p = data_dir / paths.ANALYSIS_CSV
    if p.exists():
        a = schema.read_table(p, "analysis", allow_empty=False)
        inp.analysis = a[(a["node"] == "TOTAL") & (a["batch"] == 1) & a["model"].isin(list(zoo.MODELS))]
        inp.analysis_nodes = a[(a["node"] != "TOTAL") & (a["batch"] == 1)]
    for kind in PROFILE_KINDS:
        for p in sorted(data_dir.glob(f"{kind}_*.json")):
            rec = schema.read_profile_record(p, kind)
            check_read_fields(p, rec, kind)
            inp.profiles.setdefault(kind, {})[rec["host"]] = rec
    p = data_dir / paths.BENCH_CSV
    if p.exists() or schema.journal(p).is_file():  # rows a running (or killed) command appended count too
        inp.bench = _bench(inp, one_row_per_key(p, schema.read_table(p, "bench", allow_empty=False), "bench"))
    p = data_dir / paths.LOAD_CSV
    if p.exists() or schema.journal(p).is_file():
        ld = one_row_per_key(p, schema.read_table(p, "load", allow_empty=False), "load")
        inp.load = ld[ld["model"].isin(list(zoo.MODELS))].reset_index(drop=True)
    for attr, kind in (("nodes", "precision_nodes"), ("fixes", "precision_fixes")):
        p = data_dir / f"{kind}.csv"
        if p.exists():
            t = schema.read_table(p, kind, allow_empty=False)
            setattr(inp, attr, t[t["model"].isin(list(zoo.MODELS))].reset_index(drop=True))
    _read_row_files(inp)
    if not (inp.records or inp.extras or inp.analysis is not None or inp.bench is not None or inp.load is not None):
        raise UserError(
            f"{data_dir}: holds no result file (bench.csv, analysis.csv, train_<id>.json); is it the right folder?"
        )
    inp.machines = machines(inp)
    for row in [] if inp.ok is None else inp.ok.to_dict("records"):  # every row's samples, read and checked once
        samples(inp, row)
    for row in [] if inp.load is None else inp.load[inp.load["status"] == "ok"].to_dict("records"):
        _load_samples(inp, row)
    return inp


# ---------------------------------------------------------------- what the report reads from per-host records

# Every field of a limits/nodes/lifecycle/fidelity record the report reads, with its type: (dotted name, type,
# needed) where needed is True, False (optional, checked when present and not null) or a test of the object that
# holds it (needed when it holds). schema.read_profile_record checks the fields every reader needs; these are the
# report's own, so a damaged record is one sentence naming the file, never a KeyError deep in a section.
_OK = lambda o: o.get("status") == "ok"  # noqa: E731
_WAKE = lambda o: o.get("kind") == "wake-up" and _OK(o)  # noqa: E731
REPORT_READS = {
    "limits": {
        "entries": [
            ("timestamp", "str", True),
            ("command", "str", True),
            ("items", "list", True),
            ("loadavg_1m", "num", False),
            ("load_average_1min", "num", False),
            ("busy", "str", False),
            ("others_cores", "num", False),
            ("llc_bytes", "num", False),
        ],
        "items": [
            ("kind", "str", True),
            ("status", "str", True),
            ("reason", "str", False),
            ("precision", "str", lambda i: i.get("kind") in ("matmul", "bandwidth")),
            ("engine", "str", lambda i: i.get("kind") in ("matmul", "bandwidth")),
            ("runtime", "str", lambda i: i.get("kind") == "floor"),
            ("scope", "str", lambda i: i.get("kind") == "floor"),
            ("per_s", "num", lambda i: _OK(i) and "seconds" not in i),
            ("seconds", "num", False),
            ("gap_s", "num", lambda i: i.get("kind") == "wake-up"),
            ("gaps_s", "nums", lambda i: i.get("kind") == "stall" and _OK(i)),
            ("window_s", "num", lambda i: i.get("kind") == "stall" and _OK(i)),
            ("p50_s", "num", _WAKE),
            ("n", "int", _WAKE),
            ("bytes", "num", False),
            ("capacity_bytes", "num", False),
        ],
    },
    "nodes": {
        "entries": [("profiler_cost.this_call_us", "num", True), ("accounted_error", "num", True)],
        "nodes": [("share", "num", True), ("gflop_s", "num?", True), ("gb_s", "num?", True), ("covers", "strs", True)],
    },
    "lifecycle": {
        "entries": [
            ("reason", "str", False),
            ("builds", "list", _OK),
            ("load_s", "num", _OK),
            ("first_call_s", "num", _OK),
            ("warm_p50_s", "num", _OK),
            ("peak_rss", "num", _OK),
            ("size_bytes", "num", _OK),
            ("gpu_memory_reason", "str", False),
            ("torch_max_allocated", "num", False),
            ("nvml_used", "num", False),
            ("energy_reason", "str", False),
            ("energy_j_per_call", "num", lambda e: _OK(e) and not e.get("energy_reason")),
            ("energy_source", "str", lambda e: _OK(e) and not e.get("energy_reason")),
        ],
        "builds": [("kind", "str", True), ("cache", "str", True), ("build_s", "num", True)],
    },
    "fidelity": {
        "entries": [
            ("load_average_1min", "num", False),
            ("single_call.status", "str", False),
            ("single_call.reason", "str", False),
            ("load.status", "str", False),
            ("load.reason", "str", False),
            *(
                (f"single_call.{k}", t, lambda e: _OK(e["single_call"]))
                for k, t in (
                    ("model", "str"),
                    ("runtime", "str"),
                    ("precision", "str"),
                    ("scope", "str"),
                    ("harness_p50_us", "num"),
                    ("bare_p50_us", "num"),
                    ("ratio", "num"),
                    ("rounds", "int"),
                    ("iters", "int"),
                )
            ),
            *(
                (f"load.{k}", "num", lambda e: _OK(e["load"]))
                for k in ("rate_qps", "engine_p99_us", "loadgen_p99_us", "ratio")
            ),
        ],
    },
}
_WANT = {"num": "a finite number", "num?": "a finite number or null", "int": "a whole number", "str": "text",
         "list": "a list", "strs": "a list of text", "nums": "a list of finite numbers"}  # fmt: skip
_NEEDS_ENTRY = {"fidelity"}  # the trust section reads the latest entry: a record without one is damaged
_TYPES = {
    "num": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf"),
    "num?": lambda v: v is None or _TYPES["num"](v),  # null where a node moved no bytes or did no work
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, list),
    "strs": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "nums": lambda v: isinstance(v, list) and all(_TYPES["num"](x) for x in v),
}


def check_read_fields(path: Path, rec: dict, kind: str):
    """Raise UserError naming `path` and the field when a record lacks, or holds the wrong type of, a field the
    report reads (REPORT_READS)."""
    spec = REPORT_READS.get(kind, {})
    if kind in _NEEDS_ENTRY and not rec["entries"]:
        raise UserError(f"{path}: holds no entry (a {kind} record holds one per run)")
    for i, e in enumerate(rec["entries"]):
        _fields(path, e, spec.get("entries", []), f"entries[{i}].")
        for part in ("items", "nodes", "builds"):
            if part in spec and isinstance(e.get(part), list):
                for j, x in enumerate(e[part]):
                    if not isinstance(x, dict):
                        raise UserError(f"{path}: entries[{i}].{part}[{j}] is not an object")
                    _fields(path, x, spec[part], f"entries[{i}].{part}[{j}].")


def _fields(path: Path, obj: dict, spec, prefix: str):
    for dotted, kind, needed in spec:
        at, found = obj, True
        for part in dotted.split("."):
            if not isinstance(at, dict):
                raise UserError(f"{path}: {prefix}{dotted} is not inside an object")
            found, at = part in at, at.get(part)
            if not found:
                break
        need = needed(obj) if callable(needed) else needed
        if (not found or at is None) and not need:
            continue  # optional and absent (or null)
        if not found:
            raise UserError(f"{path}: {prefix}{dotted} is missing")
        if not _TYPES[kind](at):
            want = _WANT[kind]
            raise UserError(f"{path}: {prefix}{dotted} should be {want}, got {at!r:.60}")


def machines(inp: Inputs) -> dict:
    """host id -> the first filled value of each machine fact (host.FACTS, host_label) over every row and record
    of that host."""

    wanted = ("host_label", *FACTS)
    found = [r["environment"] for r in [*inp.records.values(), *inp.extras.values()]]
    found += [rec["environment"] for recs in inp.profiles.values() for rec in recs.values()]
    for t in (inp.bench, inp.load, inp.nodes, inp.fixes):
        if t is not None and len(t):
            cols = ["host", *[c for c in wanted if c in t]]
            found += t[cols].drop_duplicates().to_dict("records")
    out: dict = {}
    for e in found:
        m = out.setdefault(str(e["host"]), {})
        for k in wanted:
            v = e.get(k)
            if k not in m and v is not None and v == v and str(v).strip() != "":
                m[k] = v
    return out


def _load_samples(inp: Inputs, row: dict):
    """A load.csv row's per-query samples, read and checked (the report states numbers derived from them)."""

    where = row.get("samples_file") or f"{inp.data_dir}/load.csv ({row['model']})"
    arrays = load_sample_arrays(inp.data_dir, row, paths.LOAD_CSV)  # an unreadable file is its own UserError there
    for k in ("us", "issue_us"):
        schema.check_samples(arrays[k] if arrays and k in arrays else [], f"{where} [{k}]")


def _bench(inp: Inputs, b):
    b = b[b["model"].isin(list(zoo.MODELS))].copy()
    return b.sort_values(["model", "host", *CONFIG, "batch"], kind="stable").reset_index(drop=True)


def _read_row_files(inp: Inputs):
    """Every file a measured bench row names (raw samples, per-row predictions), read and checked now: rendering
    starts only once every input is in memory, and a damaged file stops the report before anything is written."""
    if inp.ok is None:
        return
    for row in inp.ok.to_dict("records"):
        samples(inp, row)
        rel = row.get("predictions_file")
        if isinstance(rel, str) and rel and rel not in inp.predictions:
            inp.predictions[rel] = read_predictions(inp.data_dir, rel)


def read_predictions(data_dir: Path, rel: str) -> dict:
    """{'pred', 'y'} of a bench row's predictions file (the one containment rule for paths read from a row)."""
    what = "per-row predictions of a bench row"
    path, why = samples_path(Path(data_dir), str(rel))
    if path is None or why:
        raise UserError(f"{path or rel} ({what}) is missing or unreadable ({why})")
    z = read_npz(path, what)
    if "pred" not in z or "y" not in z:
        raise UserError(f"{path} ({what}) is missing or unreadable (no 'pred' and 'y' arrays)")
    return {"pred": z["pred"], "y": z["y"]}


def samples(inp: Inputs, row: dict):
    """Raw latency samples (us) of one bench row, or None; the report's only way to them."""

    key = tuple(row[k] for k in ["host", "model", *CONFIG, "batch"])
    if key not in inp._samples:
        where = row.get("samples_file") or f"{inp.data_dir}/samples ({row['host']}, {row['model']})"
        s = load_samples(inp.data_dir, row)  # an unreadable file is its own UserError there
        inp._samples[key] = None if s is None else schema.check_samples(s, where)
    return inp._samples[key]
