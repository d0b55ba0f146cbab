"""What is measured: a Target (a model, one input row's shape, its evaluation data), built for a zoo model, for any
ONNX file (ModelTarget: several inputs, named dynamic axes, integer inputs, output checks), and the calibration
data of statically quantized precisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import UserError, artifacts, paths, zoo
from rtml_profile import data as datamod
from rtml_profile.analyze import load_onnx
from rtml_profile.anymodel import checks, source
from rtml_profile.anymodel import io as mio
from rtml_profile.anymodel.source import Source, ort_session_error
from rtml_profile.batching import feeds_in_chunks
from rtml_profile.checkpoints import load_checkpoint, provenance
from rtml_profile.measure.accuracy import accuracy
from rtml_profile.measure.launcher import call_isolated
from rtml_profile.measure.request import check_memory
from rtml_profile.runtimes.base import Calibration, ModelRef
from rtml_profile.session import cpu_session
from rtml_profile.train import predict
from rtml_profile.vocab import CALIBRATION_METHODS, SEED_MAX

CHECK_ROWS = 32  # generated samples every runtime's outputs are checked on


@dataclass
class Target:
    """One thing to benchmark: a model, the shape of one input row, and its evaluation data (if any)."""

    ref: ModelRef
    row_shape: tuple[int, ...]  # one sample's shape (without the batch axis)
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    x_eval: np.ndarray | None = None
    y_eval: np.ndarray | None = None
    info: dict | None = None
    reference: np.ndarray | None = None
    note: str = ""
    calibration: Calibration | None = None  # for calibrated precisions (int8-static): a training-split subset
    provenance: dict = field(default_factory=dict)  # which weights: the ONNX file's digest, epochs trained

    def row_facts(self) -> dict:
        return dict(self.provenance)

    def input_bytes(self, batch: int) -> int:
        return batch * int(np.prod(self.row_shape)) * self.dtype.itemsize

    def calibration_row(self) -> tuple[tuple, np.dtype]:
        """(one row's shape, dtype) that calibration rows for a statically quantized precision must have."""
        return tuple(self.row_shape), self.dtype

    def evaluate(self, rt) -> dict:
        """Columns for this target's rows from one loaded runtime (the zoo: accuracy and parity); a list under
        "checks" holds per-output check records (results file checks.csv)."""
        return accuracy(rt, self)

    def inputs(self, batch: int) -> np.ndarray:
        """`batch` real evaluation rows (tiled when the set is smaller), else seeded random inputs."""
        if self.x_eval is not None:
            idx = np.arange(batch) % len(self.x_eval)
            return np.ascontiguousarray(self.x_eval[idx])
        rng = np.random.default_rng(0)
        shape = (batch, *self.row_shape)
        if np.issubdtype(self.dtype, np.integer):
            return rng.integers(0, 2, shape).astype(self.dtype)
        return rng.standard_normal(shape).astype(self.dtype)


DEFAULT_CALIBRATION_ROWS = 512


@dataclass(frozen=True)
class CalibrationRequest:
    """How to calibrate statically quantized precisions: method, rows of the training split, seed."""

    method: str = "minmax"
    rows: int | None = None  # None: DEFAULT_CALIBRATION_ROWS, or the whole split when it is smaller
    seed: int = 0

    def check(self) -> CalibrationRequest:
        if self.method not in CALIBRATION_METHODS:
            raise UserError(
                f"unknown calibration method {self.method!r}; valid methods: {', '.join(CALIBRATION_METHODS)}"
            )
        if self.rows is not None and (isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows <= 0):
            raise UserError(f"--calibration-rows must be a positive number of training rows, got {self.rows}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= SEED_MAX:
            raise UserError(f"--calibration-seed must be between 0 and {SEED_MAX}, got {self.seed}")
        return self

    def take(self, model_id: str, x_train: np.ndarray) -> Calibration:
        """A seeded subset of `x_train` (never the evaluation set); UserError when it asks for more rows."""
        if self.rows is not None and self.rows > len(x_train):
            raise UserError(
                f"--calibration-rows {self.rows} is larger than {model_id}'s training split ({len(x_train)} rows)"
            )
        rows = self.rows or min(DEFAULT_CALIBRATION_ROWS, len(x_train))
        idx = np.sort(np.random.default_rng(self.seed).choice(len(x_train), rows, replace=False))
        source = f"{model_id} training split, seeded subset (numpy default_rng({self.seed}).choice)"
        return Calibration(self.method, rows, self.seed, source, np.ascontiguousarray(x_train[idx]))


def zoo_target(
    model_id: str, data_dir=None, with_accuracy: bool = True, calibration: CalibrationRequest | None = None
) -> Target:
    spec = zoo.get(model_id)
    path = paths.onnx(model_id)
    if not path.is_file():
        raise UserError(paths.missing_export(model_id))
    load_onnx(path)  # a damaged export is one sentence now, not failed rows later
    t = Target(ModelRef(model_id, path, model_id, spec.in_features), (spec.in_features,))
    t.provenance = provenance(model_id)
    if not with_accuracy and calibration is None:
        t.note = "accuracy not asked for (--no-accuracy)"
        return t
    import torch

    from rtml_profile.data.common import resolve_data_dir

    resolve_data_dir(data_dir)  # a data folder that is a file is the user's mistake: refused before measuring
    model, trained_on = load_checkpoint(model_id)
    try:  # the housing split is seeded: evaluate on the rows the checkpoint was validated on
        ds = datamod.load(spec.dataset, data_dir, seed=trained_on.get("split", {}).get("seed", 0))
    except UserError as e:
        t.note = f"failed: the evaluation data could not be loaded: {e}"
        return t
    if trained_on.get("sha256") != ds.info["sha256"]:
        t.note = "the evaluation data differs from the data this checkpoint was trained on (sha256 mismatch)"
    if calibration is not None:
        t.calibration = calibration.take(model_id, ds.x_train)
    if not with_accuracy:
        t.note = "accuracy not asked for (--no-accuracy)"
        return t
    t.x_eval, t.y_eval, t.info = ds.x_val, ds.y_val, ds.info
    t.reference = predict(model, torch.as_tensor(ds.x_val)).numpy()
    return t


def onnx_target(path: Path, shapes: dict[str, list[int]] | None = None, ranges: list[str] | None = None) -> Target:
    """Any ONNX file, latency only: checked before anything is measured (several inputs, named dynamic axes given
    with --shape, integer inputs with --input-range); filed under a key that is never a zoo id."""
    src = source.resolve(str(path))
    return model_target(src, Options(shapes=shapes or {}, ranges=ranges or []), with_checks=False)


def read_npy(path: Path, what: str) -> np.ndarray:
    """One numeric, finite array from a .npy file, read only when `path` is a regular file (a FIFO never blocks:
    files.open_regular) and its header claims no more than half the free memory; anything else (an .npz archive,
    Python objects, strings, booleans, complex numbers, NaN) is one UserError naming `what`."""
    import zipfile

    from rtml_profile.files import open_regular, why_unreadable
    from rtml_profile.host import available_memory_bytes

    try:
        with open_regular(path) as f:
            if zipfile.is_zipfile(f):
                raise UserError(f"{what} {path}: an .npz archive; give one .npy array of input rows (np.save)")
            f.seek(0)
            fmt = np.lib.format
            version = fmt.read_magic(f)
            shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
            if dtype.hasobject or dtype.kind not in "iuf":
                raise UserError(f"{what} {path}: holds {dtype} values; give numbers (integers or floats)")
            claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if claimed > available_memory_bytes() // 2:
                raise UserError(f"{what} {path}: its array claims {claimed / 2**30:.3g} GiB, more than half the free "
                                "memory; refused")  # fmt: skip
            f.seek(0)
            x = np.load(f, allow_pickle=False)
    except UserError:
        raise
    except (OSError, ValueError, EOFError, TypeError) as e:
        raise UserError(f"{what} {path}: not a readable .npy array ({why_unreadable(e)})") from None
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise UserError(f"{what} {path}: holds NaN or infinite values; calibration rows must be finite")
    return x


def given_calibration(path: Path, req: CalibrationRequest, target: Target) -> Calibration:
    """Calibration rows for an --onnx file from a .npy array of input rows (a seeded subset when fewer are asked)."""
    x = read_npy(path, "--calibration-data")
    row_shape, dtype = target.calibration_row()
    if x.ndim != len(row_shape) + 1 or tuple(x.shape[1:]) != row_shape:
        raise UserError(
            f"--calibration-data {path}: rows of shape {list(x.shape[1:])} do not fit the model's input "
            f"rows {list(row_shape)}"
        )
    c = CalibrationRequest(req.method, req.rows, req.seed).take(path.name, x.astype(dtype))
    return Calibration(c.method, c.rows, c.seed, f"{path} (given)", c.x)


# ---------------------------------------------------------------- any ONNX model


@dataclass
class Options:
    """How a model is fed and judged (the CLI's options)."""

    inputs: Path | None = None  # an .npz of real inputs
    shapes: dict = field(default_factory=dict)  # input -> dims (--shape)
    ranges: list[str] = field(default_factory=list)  # --input-range NAME=LOW,HIGH
    atol: list[str] = field(default_factory=list)  # --atol [OUTPUT=]V
    rtol: list[str] = field(default_factory=list)
    locate: bool = False


@dataclass
class CheckData:
    """What every runtime's outputs are checked against (computed once, in the parent, before measuring)."""

    feeds: dict
    reference: dict
    over: checks.Overrides
    inputs_note: str
    marked: Path | None = None
    marked_reference: dict | None = None
    order: list | None = None


@dataclass
class ModelTarget(Target):
    """Any ONNX model: several inputs (dict feeds), named dynamic dimensions, integer inputs, output checks."""

    row_shape: tuple = ()
    io_inputs: list = field(default_factory=list)
    io_outputs: list = field(default_factory=list)
    shapes: mio.Shapes | None = None
    data: dict | None = None  # real inputs from --inputs
    ranges: dict = field(default_factory=dict)
    check: CheckData | None = None

    @property
    def row_shapes(self) -> dict:
        return dict(self.shapes.rows)

    def inputs(self, batch: int) -> dict:
        if self.data is not None:
            return mio.tile(self.data, batch)
        return mio.generate(self.io_inputs, self.shapes, batch, self.ranges)

    def input_bytes(self, batch: int) -> int:
        return sum(
            batch * int(np.prod(r)) * t.np_dtype.itemsize for t, r in zip(self.io_inputs, self.shapes.rows.values())
        )

    def calibration_row(self) -> tuple[tuple, np.dtype]:
        if len(self.io_inputs) != 1:
            raise UserError(
                f"{self.ref.onnx}: calibration rows (--calibration-data) feed a one-input model; this one has "
                f"{len(self.io_inputs)} inputs"
            )
        return tuple(int(d) for d in next(iter(self.shapes.rows.values()))), np.dtype(self.io_inputs[0].np_dtype)

    def evaluate(self, rt) -> dict:
        row = {"accuracy_status": "not measured", "accuracy_note": self.note}
        if self.check is None:
            return row
        c = self.check
        recs = checks.compare_all(rt.infer(c.feeds), c.reference, rt.precision, rt.caps.device, c.over)
        failed = [r for r in recs if not r["ok"]]
        if failed and c.marked is not None:
            where = _locate(rt, c)
            for r in failed:
                r["located"] = where
        for r in recs:
            r["inputs"] = c.inputs_note
        row["check_status"] = (
            "ok" if not failed else "failed: " + "; ".join(f"{r['output']}: {r['problem']}" for r in failed)
        )
        row["checks"] = recs
        return row


def _locate(rt, c: CheckData) -> str:
    """Run the marked model on the same runtime class, precision and config; name the first diverging node."""
    marked = type(rt)(ModelRef(f"{rt.model.name} (marked)", c.marked, None, None), rt.precision, rt.config)
    with marked:
        outs = marked.infer(c.feeds)
    return checks.first_divergence(outs, c.marked_reference, c.order, rt.precision, rt.caps.device, c.over)


def _reference(path: Path, feeds: dict, threads: int | None) -> dict:
    """Every output of the fp32 ONNX Runtime CPU session (the reference), computed in a worker process so that a
    graph whose call never returns (a Loop that never ends) cannot keep Ctrl-C from stopping the command."""
    return call_isolated(_reference_here, path, feeds, threads, what=f"the ONNX Runtime reference run of {path}")


def _reference_here(path: Path, feeds: dict, threads: int | None) -> dict:
    """The reference in this process; a model ORT refuses is one sentence."""
    try:
        sess = cpu_session(path, threads)
    except Exception as e:
        raise ort_session_error(path, e) from None
    names = [o.name for o in sess.get_outputs()]
    try:
        return feeds_in_chunks(lambda f: dict(zip(names, sess.run(None, f))), feeds)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"ONNX Runtime cannot run {path} on the inputs given: {first[:300]}") from None


def model_target(src: Source, opts: Options, with_checks: bool = True, threads: int | None = None) -> ModelTarget:
    """The target for `src`: inputs resolved and checked; with `with_checks`, the reference outputs computed."""
    import onnx

    model = onnx.load(str(src.path), load_external_data=False)
    ins, outs = mio.graph_io(model)
    if not ins:
        raise UserError(f"{src.path} has no inputs to feed")
    data = mio.load_npz(opts.inputs, ins) if opts.inputs else None
    shapes = mio.resolve(ins, opts.shapes, data)
    ranges = mio.parse_ranges(opts.ranges, ins)
    if data is None:
        mio.check_ranges(ins, ranges)
    note = (
        "profiled: outputs checked against the fp32 ONNX Runtime CPU reference (checks.csv); no task metric"
        if with_checks
        else "any ONNX file: seeded or given inputs, latency only (no evaluation data, so no task metric and no parity)"
    )
    ref = ModelRef(src.key, src.path, None, None, torch=src.torch)
    t = ModelTarget(ref, note=note, io_inputs=ins, io_outputs=outs, shapes=shapes, data=data, ranges=ranges)
    if with_checks:  # a declared input of terabytes is refused before anything is generated
        check_memory([t], [t.shapes.fixed_batch or CHECK_ROWS])
        t.check = _check_data(src, opts, t, threads)
    return t


def _check_data(src: Source, opts: Options, t: ModelTarget, threads) -> CheckData:
    if t.data is not None:
        feeds = t.data
        note = f"{Path(opts.inputs).name}: {len(next(iter(feeds.values())))} samples"
    else:
        feeds = t.inputs(t.shapes.fixed_batch or CHECK_ROWS)
        ranges = ", ".join(f"{k} in [{lo:g}, {hi:g})" for k, (lo, hi) in t.ranges.items())
        note = f"generated (seed {mio.SEED}): {len(next(iter(feeds.values())))} samples" + (
            f"; {ranges}" if ranges else ""
        )
    c = CheckData(feeds, _reference(src.path, feeds, threads), checks.parse_overrides(opts.atol, opts.rtol,
                  [o.name for o in t.io_outputs]), note)  # fmt: skip
    if opts.locate:
        c.marked = artifacts.derive(src.path, "marked", {"how": "every node output a graph output"}, checks.mark_all)
        c.marked_reference = _reference(c.marked, feeds, threads)
        c.order = checks.node_order(src.path)
    return c
