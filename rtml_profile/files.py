"""Files that nothing can half-write: atomic replacement, portable locks, validated JSON.

Every result, checkpoint, export and cache entry is written through `atomic_path` (or `atomic_write`): the bytes
go to a temp file in the destination's folder, named after the writing process, and replace the destination with
one rename. A reader sees the old file or the new one, never half of one; a writer killed mid-way leaves a temp
file that `clean_stale_temps` removes once its process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import re
import shutil
import stat
from pathlib import Path

from rtml_profile import UserError

_TMP = re.compile(r"^\..+\.(\d+)-\d+\.tmp(\.\w+)?$")  # .<name>.<pid>-<n>.tmp[.suffix]
_counter = itertools.count()


def _temp_name(path: Path, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{next(_counter)}.tmp{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temp path beside `path`; on a clean exit it replaces `path` in one rename, else it is removed.

    `suffix` is appended to the temp name for writers that insist on an extension (np.savez adds '.npz').
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent)
    tmp = _temp_name(path, suffix)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_group(paths):
    """Yield one temp path per destination in `paths`; on a clean exit all of them replace their destinations, or none.

    For files that only make sense together (a checkpoint, its record and its export): the old files are kept as
    backups until every rename has succeeded, and put back if one fails. An exception inside the block, or a temp
    left unwritten, replaces nothing.
    """
    dests = [Path(p) for p in paths]
    for d in dests:
        d.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(d.parent)
    temps = [_temp_name(d) for d in dests]
    try:
        yield temps
        unwritten = [str(d) for d, t in zip(dests, temps) if not t.is_file()]
        if unwritten:
            raise FileNotFoundError(f"nothing was written for {', '.join(unwritten)}")
        _replace_all(dests, temps)
    finally:
        for t in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(t)


def _replace_all(dests: list[Path], temps: list[Path]):
    done: list[tuple[Path, Path | None]] = []  # (destination, backup of its old file or None)
    try:
        for d, t in zip(dests, temps):
            backup = None
            if os.path.lexists(d):
                backup = _temp_name(d, ".old")
                try:
                    os.link(d, backup)
                except OSError:  # no hard links here (or a folder: copy2 then raises, before anything is replaced)
                    shutil.copy2(d, backup)
            done.append((d, backup))
            os.chmod(t, 0o644)
            os.replace(t, d)
    except BaseException:
        for d, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup:
                    os.replace(backup, d)
                else:
                    os.unlink(d)
        raise
    finally:
        for _, backup in done:
            if backup:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(backup)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` to `path` through a temp file and a rename: readers never see half a file."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def append_synced(path: str | os.PathLike, text: str):
    """Append `text` to `path` (created if absent, never through a symbolic link) and make it durable before
    returning: a row a caller was told is recorded survives a kill or a power cut."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        raise UserError(f"{path}: cannot be written ({e.strerror or type(e).__name__})") from None
    size = None
    try:
        size = os.fstat(fd).st_size
        data = text.encode()
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    except OSError as e:
        if size is not None:  # a disk that filled mid-way leaves no half line (the caller holds the file's lock)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
        raise UserError(f"{path}: the rows could not be written ({e.strerror or type(e).__name__})") from None
    finally:
        os.close(fd)


def clean_stale_temps(folder: Path):
    """Remove temp files in `folder` left by writers that no longer run (killed mid-write)."""
    import psutil

    with contextlib.suppress(OSError):
        for p in Path(folder).iterdir():
            m = _TMP.match(p.name)
            if m and int(m.group(1)) != os.getpid() and not psutil.pid_exists(int(m.group(1))):
                with contextlib.suppress(OSError):
                    p.unlink()


def write_json(path, obj) -> Path:
    return atomic_write(path, json.dumps(obj, indent=1, sort_keys=True, default=jsonable) + "\n")


def jsonable(o):
    """A value json cannot write, as one it can: numpy arrays and scalars as lists and numbers, paths as text."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


class NotARegularFile(OSError):
    """Raised by `open_regular` for a path that is not a regular file (a FIFO, a socket, a device, a folder)."""


def open_regular(path: str | os.PathLike):
    """`path` opened for binary reading, only when it is a regular file: the open itself never blocks (O_NONBLOCK,
    so a FIFO with no writer returns at once) and the opened file is checked with fstat (no race between a check
    and the open). Anything else raises NotARegularFile (an OSError): every reader of a user's path goes through
    here, so naming a FIFO or a device is one sentence, never a hang."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise NotARegularFile(errno.EINVAL, f"{kind}, not a regular file", str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def why_unreadable(e: BaseException) -> str:
    """The reason in an OSError (or a parse error) for a one-sentence message."""
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"


def read_regular_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of `path`, a regular file (see open_regular)."""
    with open_regular(path) as f:
        return f.read()


def read_json(path, required: tuple[str, ...] = ()) -> dict:
    """A JSON object from `path`; unreadable, not a regular file, not an object, or lacking a `required` key raises
    UserError."""
    try:
        obj = json.loads(read_regular_bytes(path).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UserError(f"{path} is not a readable JSON file ({why_unreadable(e)})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} does not hold a JSON object")
    lacking = [k for k in required if k not in obj]
    if lacking:
        raise UserError(f"{path} lacks the key(s) {', '.join(lacking)}")
    return obj


@contextlib.contextmanager
def locked(path: str | os.PathLike, timeout: float = 600):
    """An exclusive, portable lock beside `path` (a hidden `.lock` file), for a read-modify-write of it."""
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.with_name(f".{path.name}.lock")), timeout=timeout)
    try:
        with lock:
            yield
    except Timeout:
        raise UserError(f"{path} stayed locked by another rtml-profile process for {timeout:.0f} s") from None


def check_creatable(folder: Path):
    """Raise UserError unless `folder` is a folder files can be created in, or could be made: every part of it
    that exists is a folder and files can be created in the deepest one. Nothing is created (a command refused
    later, e.g. a cluster that does not answer, leaves no empty results folder behind)."""
    folder = Path(folder)
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{probe} is not a folder" if probe == folder else f"{folder}: {probe} is not a folder")
    _probe_write(probe)


def _make_probe(folder: Path) -> tuple[int, Path]:
    name = _temp_name(folder / ".write-check")
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), name


def check_writable(folder: Path):
    """Raise UserError unless files can be created in `folder` (checked before long work, not after)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / ".write-check") as tmp:
            tmp.write_bytes(b"")
        (folder / ".write-check").unlink()
    except OSError as e:
        raise UserError(f"cannot write in {folder} ({e.strerror or type(e).__name__})") from None


def check_output_file(path: str | os.PathLike, what: str, beside: tuple[str, ...] = ()) -> Path:
    """`path` as a Path once it is known that a regular file can be put there, checked before any work (nothing
    is created): not empty, not a folder or anything but a regular file where it exists, its folder exists (or
    can be made: every part of it that exists is a folder) and files can be created there (not a read-only file
    system, not /proc); `beside` names the files and folders
    written next to it (e.g. 'APPENDIX.md', 'figures/'), each checked the same way. Raises UserError naming `what`
    (the option) otherwise."""
    if not str(path).strip():
        raise UserError(f"{what} is empty; give the path of a file to write")
    path = Path(path)
    if str(path).endswith(("/", os.sep)) or path.name in ("", ".", ".."):
        raise UserError(f"{what} {path} names a folder; give the path of a file to write")
    folder = path.parent
    for name in beside:
        if name.rstrip("/") == path.name:
            raise UserError(f"{what} {path}: {path.name} is the name of a file written beside it; choose another")
    for p, want_dir in [(path, False), *((folder / n.rstrip("/"), n.endswith("/")) for n in beside)]:
        try:
            mode = os.stat(p).st_mode
        except (FileNotFoundError, NotADirectoryError):  # absent (or under a file: said below)
            continue
        except OSError as e:
            raise UserError(f"{what} {path}: {p} cannot be reached ({why_unreadable(e)})") from None
        named = f"{what} {path}" if p == path else f"{what} {path}: {p}"
        if want_dir and not stat.S_ISDIR(mode):
            raise UserError(f"{named} is in the way (a folder of that name is written there)")
        if not want_dir and stat.S_ISDIR(mode):
            raise UserError(f"{named} is a folder; give the path of a file to write")
        if not want_dir and not stat.S_ISREG(mode):
            raise UserError(f"{named} exists and is not a regular file (a FIFO, a device); refused")
    if not folder.is_dir():  # made once the output is written, when it can be: every part that exists a folder
        existing = folder
        while not os.path.lexists(existing) and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise UserError(f"{what} {path}: its folder {folder} cannot be made ({existing} is not a folder)")
        _probe_write(existing, f"{what} {path}: ")
        return path
    for d in [folder, *(folder / n.rstrip("/") for n in beside if n.endswith("/"))]:
        if d.is_dir():
            _probe_write(d, f"{what} {path}: ")
    return path


def _probe_write(folder: Path, prefix: str = ""):
    """Create and remove one empty temp file in `folder`: the one sure test that files can be made there (a
    refusal is '<prefix>cannot write in <folder> (why)')."""
    try:
        fd, probe = _make_probe(folder)
    except OSError as e:
        raise UserError(f"{prefix}cannot write in {folder} ({why_unreadable(e)})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def hash_files(h, files, root: Path | None = None):
    """Feed `files` into the hashlib object `h` in the given order (with their names relative to `root`, when
    given), 1 MiB at a time: the one file hasher every digest in the toolkit is made with."""
    for p in files:
        if root is not None:
            h.update(str(Path(p).relative_to(root)).encode() + b"\0")
        with open_regular(p) as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h


def sha256_files(files, root: Path | None = None) -> str:
    """sha256 over the files' contents (and relative names, with `root`), in the given order."""
    return hash_files(hashlib.sha256(), files, root).hexdigest()


def sha256_file(path) -> str:
    return sha256_files([path])


def read_npz(path, what: str = "arrays", limit_bytes: int | None = None) -> dict:
    """Every array of an .npz file at `path` (`what` names it in errors), read without running code and without
    trusting its headers: a file that is not a zip of .npy members (a plain .npy included), a member holding
    Python objects (pickles), or members whose headers claim more bytes than `limit_bytes` (default: half the
    free memory) raise UserError before anything large is allocated. Only a regular file is opened (never a
    FIFO or a device, which could block forever: `open_regular`)."""
    path = Path(path)
    try:
        fh = open_regular(path)
    except OSError as e:
        raise UserError(f"{path} ({what}) cannot be read ({why_unreadable(e)})") from None
    with fh:
        return _read_npz(fh, path, what, limit_bytes)


def _read_npz(fh, path: Path, what: str, limit_bytes: int | None) -> dict:
    import zipfile
    import zlib

    import numpy as np
    import psutil  # (not host.available_memory_bytes: host caches its facts through this module)

    limit = int(psutil.virtual_memory().available) // 2 if limit_bytes is None else limit_bytes
    try:
        if not zipfile.is_zipfile(fh):
            raise UserError(f"{path} ({what}) is not a readable .npz file of arrays (a zip of .npy files)")
        fh.seek(0)
        claimed = 0
        with zipfile.ZipFile(fh) as z:
            for name in z.namelist():
                with z.open(name) as f:
                    fmt = np.lib.format
                    header = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = header(f)
                if dtype.hasobject:
                    raise UserError(f"{path} ({what}): member {name} holds Python objects (a pickle); refused")
                claimed += int(np.prod(shape, dtype=object)) * dtype.itemsize
        if claimed > limit:
            raise UserError(
                f"{path} ({what}): its arrays claim {claimed / 2**30:.3g} GiB, more than the "
                f"{limit / 2**30:.3g} GiB that may be read here; refused"
            )
        fh.seek(0)
        with np.load(fh, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except UserError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, MemoryError, TypeError) as e:
        raise UserError(f"{path} ({what}) is not a readable .npz file of arrays ({type(e).__name__})") from None
