"""`rtml-profile compare OLD NEW`: what changed between two sets of results, row by row, and whether it is real.

OLD and NEW are results folders, or git revisions whose committed reports/data is read blob by blob (`git ls-tree`,
`git cat-file`) into a temporary folder: only regular files are written there, a symlink in the revision is
never followed (it stays a dangling symlink, which the rule refuses), and every path a row names passes
results.samples_path.

Rows of bench.csv and load.csv are matched by their keys; for each pair
the ratio NEW/OLD of a latency (bench: p50 per call; load: p99 per query) is printed with a verdict from the raw
samples: slower or faster only when stats.is_faster says so (a one-sided Mann-Whitney U test at
stats.FASTER_ALPHA and a median ratio of at least stats.FASTER_RATIO, as asv does), otherwise within noise. A row
that is significantly slower by at least the user's factor is a regression.

Rows are only ever compared with rows of the same machine: the `host` column, part of every key, is the
machine's fingerprint id (rtml_profile.host). When OLD and NEW share no machine at all, compare refuses (exit 2,
one sentence naming both sides' machines): latencies of different machines differ for reasons no change made.
When they share some, only those machines' rows are compared and every machine present on one side only is
named in a warning, so a comparison never silently shrinks.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rtml_profile import UserError, paths, schema, stats
from rtml_profile.results import load_samples, read_csv
from rtml_profile.views import one_row_per_key

METRIC = {"bench": "p50_us", "load": "p99_us"}
SHOWN = {"bench": ["model", "runtime", "precision", "variant", "scope", "batch"],
         "load": ["model", "runtime", "precision", "scenario", "max_batch", "offered_qps"]}  # fmt: skip


@dataclass
class Comparison:
    factor: float
    rows: list[dict] = field(default_factory=list)
    regressions: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # machines on one side only (their rows are not compared)

    def summary(self) -> str:
        counts = {v: sum(1 for r in self.rows if r["verdict"] == v) for v in ("slower", "faster", "no change")}
        return (
            f"{len(self.rows)} rows compared: {counts['slower']} significantly slower, {counts['faster']} "
            f"significantly faster, {counts['no change']} within noise; {len(self.regressions)} regressed by "
            f"{self.factor:g}x or more"
        )


def _git(args: list[str], text: bool = True) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=text, check=False, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise UserError(f"git cannot be run here ({e.strerror or type(e).__name__}); give results folders, not "
                        f"revisions, or install git")  from None  # fmt: skip


def resolve(spec: str, tmp: Path) -> Path:
    """A results folder for `spec`: the folder itself, or a git revision's reports/data written into a fresh
    folder under `tmp` from the revision's blobs (regular files; a symlink becomes one that points nowhere)."""
    if Path(spec).is_dir():
        return Path(spec)
    if _git(["rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"]).returncode != 0:
        raise UserError(f"{spec!r} is neither a results folder nor a git revision of this repository")
    top = _git(["rev-parse", "--show-toplevel"]).stdout.strip()
    try:  # the project's reports/data by name: a symlinked reports/ is not followed out of the repository
        rel = (Path.cwd().resolve() / paths.DATA).relative_to(Path(top).resolve()).as_posix()
    except ValueError:
        raise UserError(f"{Path.cwd()} does not lie inside the git repository {top}; run compare from the "
                        "project folder, or give results folders") from None  # fmt: skip
    for i in range(1, len(PurePosixPath(rel).parts) + 1):  # reports/ (or reports/data) a symlink in the revision
        part = PurePosixPath(*PurePosixPath(rel).parts[:i]).as_posix()
        entry = _git(["-C", top, "ls-tree", "-z", "--full-tree", f"{spec}^{{commit}}", "--", part]).stdout
        if entry.startswith("120000 "):
            raise UserError(f"revision {spec}: {part} is a symbolic link; compare reads a revision's {rel} only "
                            "from its own files, never through a link")  # fmt: skip
    listing = _git(["-C", top, "ls-tree", "-r", "-z", "--full-tree", f"{spec}^{{commit}}", "--", rel], text=False)
    entries = [e.split(b"\t", 1) for e in listing.stdout.split(b"\0") if e]
    if listing.returncode != 0 or not entries:
        raise UserError(f"revision {spec} has no {rel}")
    out = Path(tempfile.mkdtemp(prefix="rev-", dir=tmp))
    files = {}
    for meta, name in entries:
        mode, kind, sha = meta.decode().split()
        inside = PurePosixPath(name.decode("utf-8", "replace")).relative_to(rel)
        if ".." in inside.parts or kind != "blob":
            continue  # a submodule is not results data
        if mode in ("100644", "100755"):
            files[inside] = sha
        elif mode == "120000":  # a symlink: marked as one (pointing nowhere) so the rule names it; never followed
            (out / inside).parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                (out / inside).symlink_to("symlink-in-the-revision-not-followed")
    batch = subprocess.run(["git", "-C", top, "cat-file", "--batch"], input="".join(f"{h}\n" for h in files.values())
                           .encode(), capture_output=True, check=False)  # fmt: skip
    data, at = batch.stdout, 0
    for inside in files:
        head_end = data.find(b"\n", at)
        size = int(data[at:head_end].split()[2]) if head_end > 0 and b" blob " in data[at:head_end] else -1
        if size < 0:
            raise UserError(f"revision {spec}: git could not read {rel}/{inside}")
        dest = out / inside
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data[head_end + 1 : head_end + 1 + size])
        at = head_end + 1 + size + 1
    return out


def compare(old: str, new: str, factor: float = 1.2) -> Comparison:
    """Compare every keyed row present in both OLD and NEW (see the module's docstring)."""
    if not factor > 1:
        raise UserError(f"--factor must be a ratio above 1, got {factor}")
    res = Comparison(factor)
    with tempfile.TemporaryDirectory() as tmp:
        a, b = resolve(old, Path(tmp)), resolve(new, Path(tmp))
        names = {a: old, b: new}
        for d in (a, b):
            check_tables(d, names[d])
        res.warnings = same_machines(old, a, new, b)
        for kind in ("bench", "load"):
            for row in _pairs(a, b, kind, names):
                res.rows.append(row)
                if row["verdict"] == "slower" and row["ratio"] >= factor:
                    res.regressions.append(row)
    return res


def _shown(d: Path, name: str, file: str) -> str:
    """How a table is named in a sentence: its path in a folder, REV:reports/data/FILE for a revision."""
    return str(d / file) if Path(name).is_dir() else f"{name}:{paths.DATA.as_posix()}/{file}"


def check_tables(d: Path, name: str):
    """Raise UserError when `d` (spec `name`) has nothing to compare (no measured bench.csv or load.csv row) or
    a table with two rows for one key (schema.KEYS): which of the two would be compared is not an answer."""
    measured = 0
    for kind in ("bench", "load"):
        t = read_csv(d / schema.FILES[kind], kind)
        if not len(t):
            continue
        one_row_per_key(_shown(d, name, schema.FILES[kind]), t, kind)
        measured += int((t["status"] == "ok").sum())
    if not measured:
        raise UserError(f"{name} holds no measured row (bench.csv or load.csv with status ok); nothing to compare")


def _checked_samples(d: Path, row: dict, kind: str, name: str):
    """A row's raw samples, validated (schema.check_samples: real, finite, 1-D, non-negative), or None when it has
    none; a damaged file is one UserError naming it, never an answer."""
    shown = _shown(d, name, str(row.get("samples_file")))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # complex numbers cast to real for the digest: damage, not a warning
            s = load_samples(d, row, schema.FILES[kind])
    except (ValueError, TypeError, Warning) as e:  # strings or complex numbers whose digest cannot be computed
        raise UserError(f"{shown}: damaged latency samples (not real numbers: {type(e).__name__})") from None
    return None if s is None else schema.check_samples(s, shown)


def machines(folder: Path) -> dict[str, str]:
    """{host id: label} of the ok bench and load rows in a results folder."""

    out = {}
    for kind in ("bench", "load"):
        t = read_csv(folder / schema.FILES[kind], kind)
        t = t[t["status"] == "ok"]
        out.update(dict(zip(t["host"], t["host_label"] if "host_label" in t else t["host"])))
    return out


def _named(ms: dict[str, str]) -> str:
    return ", ".join(f"{label} [{h}]" for h, label in sorted(ms.items())) or "none"


def same_machines(old: str, a: Path, new: str, b: Path) -> list[str]:
    """Warnings for machines on one side only; UserError when the two sides share no machine."""
    ma, mb = machines(a), machines(b)
    if ma and mb and not set(ma) & set(mb):
        raise UserError(
            f"{old} was measured on {_named(ma)} and {new} on {_named(mb)}: different machines (their fingerprints "
            f"differ), so their latencies are not compared; compare two results of one machine"
        )
    out = []
    for side, mine, other in ((old, ma, mb), (new, mb, ma)):
        only = {h: v for h, v in mine.items() if h not in other}
        if only and other:
            out.append(f"Warning: {side} holds rows of {_named(only)}, a machine the other side lacks; those rows "
                       f"are not compared")  # fmt: skip
    return out


def _pairs(a: Path, b: Path, kind: str, names: dict):

    key = schema.KEYS[kind]
    old, new = (read_csv(d / schema.FILES[kind], kind) for d in (a, b))
    if not len(old) or not len(new):
        return
    old, new = old[old["status"] == "ok"], new[new["status"] == "ok"]
    both = old.merge(new, on=key, suffixes=("_old", "_new"))
    metric = METRIC[kind]
    for _, r in both.iterrows():
        o = {**{k: r[k] for k in key}, "samples_file": r["samples_file_old"], "samples_sha256": r["samples_sha256_old"]}
        n = {**{k: r[k] for k in key}, "samples_file": r["samples_file_new"], "samples_sha256": r["samples_sha256_new"]}
        for side, d in (("old", a), ("new", b)):
            if not float(r[f"{metric}_{side}"]) > 0:
                what = " ".join(str(r[k]) for k in key)
                raise UserError(f"{d / schema.FILES[kind]}: the row {what} has {metric} {r[f'{metric}_{side}']}, "
                                f"not a positive latency; that row is damaged")  # fmt: skip
        so, sn = _checked_samples(a, o, kind, names[a]), _checked_samples(b, n, kind, names[b])
        ratio = float(r[f"{metric}_new"]) / float(r[f"{metric}_old"])
        verdict = "no samples"
        if so is not None and sn is not None:
            verdict = "slower" if stats.is_faster(so, sn) else "faster" if stats.is_faster(sn, so) else "no change"
        yield {
            "table": kind,
            "machine": r.get("host_label_new", r["host"]),
            **{k: r[k] for k in SHOWN[kind]},
            f"old {metric}": float(r[f"{metric}_old"]),
            f"new {metric}": float(r[f"{metric}_new"]),
            "ratio": ratio,
            "verdict": verdict,
            "median ratio": stats.percentile(sn, 50) / stats.percentile(so, 50)
            if so is not None and sn is not None
            else None,
        }
