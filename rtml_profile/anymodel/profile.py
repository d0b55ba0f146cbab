"""`rtml-profile profile`: analyze + bench on every runtime that takes ONNX + output checks, for any model.

Rows go to the same results files as the zoo's (analysis.csv, bench.csv, samples/) under the model's key (see
source.py), its output checks to checks.csv, what the model is and how it was run to data/models/<slug>.json, and
its appendix to reports/models/<slug>.md. Derived files (torchvision exports, int8/fp16 files, marked models) go to
exported/derived/; nothing is written beside the user's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import UserError, bench, paths
from rtml_profile.anymodel import checks
from rtml_profile.anymodel import io as mio
from rtml_profile.anymodel.source import Source, ort_session_error
from rtml_profile.runtimes.base import ModelRef

CHECK_ROWS = 32  # generated samples every runtime's outputs are checked on
DEFAULT_BATCHES = "1,8"


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
class ModelTarget(bench.Target):
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
    """Every output of the fp32 ONNX Runtime CPU session (the reference); a model ORT refuses is one sentence."""
    from rtml_profile.batching import feeds_in_chunks
    from rtml_profile.runtimes.ort import cpu_session

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
    t = ModelTarget(ModelRef(src.key, src.path, None, None), note=note, io_inputs=ins, io_outputs=outs, shapes=shapes,
                    data=data, ranges=ranges)  # fmt: skip
    if with_checks:  # a declared input of terabytes is refused before anything is generated
        bench.check_memory([t], [t.shapes.fixed_batch or CHECK_ROWS])
        t.check = _check_data(src, opts, t, threads)
    return t


def _check_data(src: Source, opts: Options, t: ModelTarget, threads) -> CheckData:
    from rtml_profile import artifacts

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


# ---------------------------------------------------------------- the whole profile


@dataclass
class Request:
    """A profile request as the user states it."""

    target: str
    options: Options = field(default_factory=Options)
    image_size: int = 224
    weights: str = "auto"
    runtimes: list[str] | None = None
    precisions: list[str] | None = None
    scopes: list[str] | None = None
    batches: str | None = None
    settings: bench.Settings = field(
        default_factory=lambda: bench.Settings(warmup_iters=3, min_iters=100, min_s=0.3, max_s=2.0)
    )
    results: Path = paths.DATA
    reports: Path = paths.MODEL_REPORTS
    progress: bool = True


@dataclass
class Profile:
    source: Source
    analysis: object
    bench: bench.RunResult
    record: Path
    appendix: Path

    def failed_checks(self) -> list[dict]:
        return [c for c in self.bench.checks if str(c.get("ok")) != "True"]


def runtime_names(asked: list[str] | None) -> list[str]:
    """The runtimes asked for, else every registered runtime that takes an ONNX file (capabilities, not names)."""
    from rtml_profile import runtimes

    if asked:
        for n in asked:
            if not runtimes.get(n).caps.takes_onnx:
                raise UserError(f"{n} runs zoo checkpoints only, not an ONNX model")
        return list(asked)
    return [n for n in runtimes.names() if runtimes.get(n).caps.takes_onnx]


def _batches(req: Request, t: ModelTarget) -> list[int]:
    fixed = t.shapes.fixed_batch
    batches = bench.parse_batches(req.batches or (str(fixed) if fixed else DEFAULT_BATCHES))
    if fixed and batches != [fixed]:
        raise UserError(f"{t.ref.onnx} fixes its batch axis at {fixed}; use --batch {fixed}")
    return batches


def run(req: Request) -> Profile:
    """Resolve, check, analyze, bench, check outputs, record and render one model (see the module docstring)."""
    from rtml_profile import analyze as an
    from rtml_profile.anymodel import source
    from rtml_profile.files import check_writable
    from rtml_profile.host import physical_cores
    from rtml_profile.results import BenchStore, read_csv, upsert_rows

    names = runtime_names(req.runtimes)
    bench.check_request(names, req.precisions, req.scopes)
    req.settings.validate()
    src = source.resolve(req.target, req.image_size, req.weights)
    t = model_target(src, req.options, threads=req.settings.threads or physical_cores())
    batches = _batches(req, t)
    bench.check_memory([t], batches)
    results = Path(req.results)  # output problems are found before measuring, after the model's own
    BenchStore(results).check()
    read_csv(results / paths.ANALYSIS_CSV, "analysis")
    check_writable(Path(req.reports))
    analysis = an.analyze(src.path, batch=t.shapes.fixed_batch or 1, shapes=_analysis_shapes(t), name=src.key)
    upsert_rows(results / paths.ANALYSIS_CSV, an.tidy_rows(analysis), "analysis")
    res = bench.run([t], names, batches, req.precisions, req.scopes, req.settings, req.progress, results)
    record = write_record(src, t, analysis, results)
    from rtml_profile.report.models import render_model

    appendix = render_model(results, src.slug, Path(req.reports))
    return Profile(src, analysis, res, record, appendix)


def _analysis_shapes(t: ModelTarget) -> dict:
    return {name: [t.shapes.fixed_batch or 1, *row] for name, row in t.shapes.rows.items()}


def write_record(src: Source, t: ModelTarget, analysis, results: Path) -> Path:
    """data/models/<slug>.json: what the model is (key, origin, inputs, outputs, opset) and how it was fed."""
    import onnx

    from rtml_profile.anymodel.source import opset_of
    from rtml_profile.files import write_json
    from rtml_profile.host import host_label
    from rtml_profile.results import now

    model = onnx.load(str(src.path), load_external_data=False)
    record = {
        "key": src.key,
        "slug": src.slug,
        "name": src.name,
        "origin": src.origin,
        "sha256": src.digest,
        "opset": opset_of(model),
        "inputs": [
            {
                "name": i.name,
                "type": i.describe(),
                "row": list(t.shapes.rows[i.name]),
                "range": list(t.ranges[i.name]) if i.name in t.ranges else None,
            }
            for i in t.io_inputs
        ],  # fmt: skip
        "outputs": [{"name": o.name, "type": o.describe()} for o in t.io_outputs],
        "checked_on": t.check.inputs_note if t.check else "",
        "analysis_batch": analysis.batch,
        "unknown_ops": list(analysis.unknown),
        "info": src.info,
        "host": host_label(),
        "timestamp": now(),
    }
    path = Path(results) / paths.MODEL_RECORDS / f"{src.slug}.json"
    write_json(path, record)
    return path
