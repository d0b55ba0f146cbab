"""`rtml-profile compare OLD NEW`: what changed between two sets of results, row by row, and whether it is real.

OLD and NEW are results folders, or git revisions whose committed reports/data is read (extracted with
`git archive` into a temporary folder). Rows of bench.csv and load.csv are matched by their keys; for each pair
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

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rtml_profile import UserError, paths, schema, stats

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


def _git(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)


def resolve(spec: str, tmp: Path) -> Path:
    """A results folder for `spec`: the folder itself, or a git revision's reports/data extracted into `tmp`."""
    if Path(spec).is_dir():
        return Path(spec)
    if _git(["rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"]).returncode != 0:
        raise UserError(f"{spec!r} is neither a results folder nor a git revision of this repository")
    top = _git(["rev-parse", "--show-toplevel"]).stdout.strip()
    rel = (Path.cwd() / paths.DATA).resolve().relative_to(Path(top).resolve()).as_posix()
    archive = tmp / f"{abs(hash(spec))}.tar"
    done = _git(["-C", top, "archive", "--format=tar", f"--output={archive}", spec, rel])
    if done.returncode != 0:
        raise UserError(f"revision {spec} has no {rel} ({done.stderr.strip().splitlines()[-1][:120]})")
    out = tmp / f"rev-{abs(hash(spec))}"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], check=True)
    return out / rel


def compare(old: str, new: str, factor: float = 1.2) -> Comparison:
    """Compare every keyed row present in both OLD and NEW (see the module's docstring)."""
    if not factor > 1:
        raise UserError(f"--factor must be a ratio above 1, got {factor}")
    res = Comparison(factor)
    with tempfile.TemporaryDirectory() as tmp:
        a, b = resolve(old, Path(tmp)), resolve(new, Path(tmp))
        res.warnings = same_machines(old, a, new, b)
        for kind in ("bench", "load"):
            for row in _pairs(a, b, kind):
                res.rows.append(row)
                if row["verdict"] == "slower" and row["ratio"] >= factor:
                    res.regressions.append(row)
    return res


def machines(folder: Path) -> dict[str, str]:
    """{host id: label} of the ok bench and load rows in a results folder."""
    from rtml_profile.results import read_csv

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


def _pairs(a: Path, b: Path, kind: str):
    from rtml_profile.results import load_samples, read_csv

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
        so, sn = load_samples(a, o), load_samples(b, n)
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
