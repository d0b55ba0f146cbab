"""Relabel results written before machines were fingerprinted (issue 20) as measured on an unknown machine.

    python benchmarks/migrate_unknown_hosts.py [DATA_DIR]     # default: reports/data
    python benchmarks/migrate_unknown_hosts.py --retire unknown-2x-AMD-EPYC --by HOST_ID [DATA_DIR]

Before fingerprints a host was a CPU name and a count ('2x AMD EPYC'), and different machines wrote rows under
one name, so which machine measured an old row cannot be told any more. Every table row, record and samples
file whose host is not a fingerprint id gets schema.unknown_machine's host id ('unknown-2x-AMD-EPYC') and label
("2-core AMD EPYC, unknown machine"): never a fingerprint id, so old results are never mixed with new ones.
Samples files move to the folder of their new host id (their digests are of their contents and still check) and
limits_/nodes_/lifecycle_<host>.json are renamed after it. Idempotent: fingerprinted and already migrated results
are left alone. Table cells are rewritten as read (strings), so nothing but the host columns changes.

--retire OLD --by NEW (after benchmarks/remeasure_cpu.sh): drops every row of machine OLD (an unknown machine, or a
fingerprinted one the project no longer measures on, so that the report shows one run on one CPU machine) that NEW
re-measured (a row of NEW with the same key but the host), with its samples file, OLD's rows that hold no
measurement (a runtime absent or failed there) in a table NEW wrote to, OLD's precision fixes of a variant NEW
re-ran (the nodes a fix keeps depend on the weights), and OLD's limits/nodes/lifecycle record
where NEW has one of that kind. What NEW did not re-measure stays, still labelled unknown.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from rtml_profile import paths, schema
from rtml_profile.files import atomic_write, read_json, write_json
from rtml_profile.results import SAMPLES, Store, load_sample_arrays, samples_path, slug


def _moved(rel: str, old: str, new: str) -> str:
    """samples/<slug(old)>/... or samples/load/<slug(old)>/... under the new host id."""
    for prefix in (f"{SAMPLES}/", f"{SAMPLES}/load/"):
        if rel.startswith(f"{prefix}{slug(old)}/"):
            return f"{prefix}{slug(new)}/" + rel[len(f"{prefix}{slug(old)}/") :]
    return rel


def _old(host) -> bool:
    """A host written before fingerprints and not migrated yet (not a fingerprint id, not 'unknown-...')."""
    return schema.unknown(host) and not str(host).startswith(schema.UNKNOWN)


def migrate_table(data_dir: Path, kind: str) -> int:
    import pandas as pd

    path = data_dir / schema.FILES[kind]
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "host" not in df:
        return 0
    if "host_label" not in df:
        df.insert(df.columns.get_loc("host") + 1, "host_label", "")
    todo = df["host"].map(_old)
    for i in df.index[todo]:
        old = df.at[i, "host"]
        df.at[i, "host"], df.at[i, "host_label"] = schema.unknown_machine(old)
        rel = df.at[i, "samples_file"] if "samples_file" in df else ""
        if rel:
            new_rel = _moved(rel, old, df.at[i, "host"])
            file, why = samples_path(data_dir, rel)  # moves only what the containment rule accepts
            if new_rel != rel and file is not None and not why and samples_path(data_dir, new_rel)[0] is not None:
                (data_dir / new_rel).parent.mkdir(parents=True, exist_ok=True)
                file.rename(data_dir / new_rel)
            df.at[i, "samples_file"] = new_rel
    if todo.any():
        buf = io.StringIO()
        df.to_csv(buf, index=False)
        atomic_write(path, buf.getvalue())
        for row in schema.read_table(path, kind).to_dict("records"):  # every moved file still holds its digest
            load_sample_arrays(data_dir, row, path.name)
    return int(todo.sum())


def migrate_records(data_dir: Path) -> list[str]:
    done = []
    from rtml_profile.results import PROFILE_KINDS as KINDS
    from rtml_profile.results import record_path

    for kind in KINDS:
        for p in sorted(data_dir.glob(f"{kind}_*.json")):
            rec = read_json(p)
            if not _old(rec["host"]):
                continue
            host, label = schema.unknown_machine(rec["host"])
            rec["host"], rec["environment"]["host"], rec["environment"]["host_label"] = host, host, label
            new = record_path(kind, host, data_dir)
            write_json(new, rec)
            if new != p:
                p.unlink()
            done.append(f"{p.name} -> {new.name}")
    envs = [*data_dir.glob("train_*.json"), *data_dir.glob("gpu_train_*.json")]
    for p in sorted(envs):
        rec = read_json(p)
        env = rec.get("environment", {})
        if "host" in env and _old(env["host"]):
            env["host"], env["host_label"] = schema.unknown_machine(env["host"])
            write_json(p, rec)
            done.append(p.name)
    for p in sorted((data_dir / paths.MODEL_RECORDS).glob("*.json")):
        rec = read_json(p)
        if "host" in rec and _old(rec["host"]):
            rec["host"], rec["host_label"] = schema.unknown_machine(rec["host"])
            write_json(p, rec)
            done.append(f"{paths.MODEL_RECORDS}/{p.name}")
    return done


def _redone(df, cols: list[str], old: str, new: str):
    """The rows of `old` whose `cols` values a row of `new` also has (a boolean Series)."""
    import pandas as pd

    seen = set(map(tuple, df.loc[df["host"] == new, cols].to_numpy()))
    return (df["host"] == old) & pd.Series([tuple(r) in seen for r in df[cols].to_numpy()], index=df.index)


def retire(data_dir: Path, old: str, new: str) -> list[str]:
    """Drop what `old` (another machine) measured and `new` re-measured; see the module's docstring."""
    import pandas as pd

    from rtml_profile.results import PROFILE_KINDS as KINDS
    from rtml_profile.results import record_path

    if old == new or schema.unknown(new):
        raise SystemExit(f"--retire takes another machine ({old!r}) and --by a fingerprint id ({new!r})")
    done = []
    for kind, name in schema.FILES.items():
        path = data_dir / name
        if "host" not in schema.KEYS[kind] or not path.is_file() or path.stat().st_size == 0:
            continue
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        rest = [k for k in schema.KEYS[kind] if k != "host" and k in df]
        drop = _redone(df, rest, old, new)
        if "status" in df and (df["host"] == new).any():  # "runtime absent" on a machine nobody can name says nothing
            drop |= (df["host"] == old) & (df["status"] != "ok")
        if kind == "precision_fixes":  # which nodes a fix keeps depends on the weights: NEW's fixes replace OLD's
            drop |= _redone(df, ["model", "precision", "calibration_method"], old, new)
        if drop.any():
            for rel in df.loc[drop, "samples_file"] if "samples_file" in df else []:
                file, why = samples_path(data_dir, rel)  # the one containment rule: never outside samples/
                if file is not None and not why:
                    file.unlink()
            buf = io.StringIO()
            df[~drop].to_csv(buf, index=False)
            atomic_write(path, buf.getvalue())
            done.append(f"{name}: {int(drop.sum())} row(s) of {old} re-measured on {new}")
    for kind in KINDS:
        if record_path(kind, new, data_dir).is_file() and record_path(kind, old, data_dir).is_file():
            record_path(kind, old, data_dir).unlink()
            done.append(f"{record_path(kind, old, data_dir).name}: replaced by {record_path(kind, new, data_dir).name}")
    return done


def _prune(folder: Path):
    """Remove folders the moves left empty."""
    for d in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(d.iterdir()):
            d.rmdir()


def _compact(data_dir: Path):
    """Rows still in a table's journal go into its CSV first: this script rewrites the CSV files themselves."""
    for kind in schema.FILES:
        Store.of(data_dir, kind).compact()


def main(argv=None):
    args = list(argv if argv is not None else sys.argv[1:])
    if args[:1] == ["--retire"]:
        if len(args) < 4 or args[2] != "--by":
            raise SystemExit("usage: migrate_unknown_hosts.py --retire UNKNOWN_HOST --by HOST_ID [DATA_DIR]")
        data_dir = Path(args[4]) if len(args) > 4 else paths.DATA
        _compact(data_dir)
        for what in retire(data_dir, args[1], args[3]):
            print(f"retired {what}")
        _prune(data_dir / SAMPLES)
        return
    data_dir = Path(args[0]) if args else paths.DATA
    _compact(data_dir)
    for kind in schema.FILES:
        n = migrate_table(data_dir, kind)
        if n:
            print(f"{schema.FILES[kind]}: {n} row(s) relabelled as measured on an unknown machine")
    for what in migrate_records(data_dir):
        print(f"relabelled {what}")
    if (data_dir / SAMPLES).is_dir():
        _prune(data_dir / SAMPLES)


if __name__ == "__main__":
    main()
