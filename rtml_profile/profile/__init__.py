"""Where the time goes: the machine's measured limits (limits.py), per-node profiles (nodes.py), start-up and
memory per runtime (lifecycle.py), and the roofline that joins them to the benchmark (roofline.py).

Each measurement writes one JSON record per host in reports/data/ (`<kind>_<host>.json`, read back through
rtml_profile.schema); the report only reads them. Nothing here tests a runtime's name: runtimes are driven through
their protocol (an empty model for the per-call floor, RunConfig(profile_nodes=True) for node times).
"""

from __future__ import annotations

from pathlib import Path

from rtml_profile import paths

KINDS = ("limits", "nodes", "lifecycle")


def record_path(kind: str, host: str, data_dir: Path = paths.DATA) -> Path:
    """reports/data/<kind>_<host slug>.json: one record per host and kind."""
    from rtml_profile.results import slug

    return Path(data_dir) / f"{kind}_{slug(host)}.json"


def save_entries(kind: str, entries: list[dict], key: tuple[str, ...], data_dir: Path = paths.DATA, merge=None):
    """Merge `entries` into this host's <kind> record under a lock: an entry replaces the one with its key, or
    `merge(old entries, new entries)` gives the entries to keep. Returns (path, the entries written)."""
    from rtml_profile.files import check_writable, locked, write_json
    from rtml_profile.host import environment
    from rtml_profile.schema import read_profile_record

    env = environment()
    path = record_path(kind, env["host"], data_dir)
    check_writable(Path(data_dir))
    with locked(path):
        old = read_profile_record(path, kind)["entries"] if path.is_file() else []
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
