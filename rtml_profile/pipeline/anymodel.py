"""`rtml-profile profile`: analyze + bench on every runtime that takes ONNX + output checks, for any model.

Rows go to the same results files as the zoo's (analysis.csv, bench.csv, samples/) under the model's key (see
source.py), its output checks to checks.csv, what the model is and how it was run to data/models/<slug>.json, and
its appendix to reports/models/<slug>.md. Derived files (torchvision exports, int8/fp16 files, marked models) go to
exported/derived/; nothing is written beside the user's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rtml_profile import UserError, analyze, paths, runtimes
from rtml_profile.anymodel import source
from rtml_profile.anymodel.source import Source, opset_of
from rtml_profile.files import check_writable, write_json
from rtml_profile.host import host_id, host_label, physical_cores
from rtml_profile.measure.request import check_memory, check_request, parse_batches
from rtml_profile.measure.targets import ModelTarget, Options, model_target
from rtml_profile.measure.timing import Settings
from rtml_profile.report.models import render_model
from rtml_profile.results import BenchStore, now, read_csv, upsert_rows
from rtml_profile.scenarios import bench

DEFAULT_BATCHES = "1,8"


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
    variants: list[str] | None = None  # opt-in variants to measure too (torch-cpu's aoti)
    settings: Settings = field(default_factory=lambda: Settings(warmup_iters=3, min_iters=100, min_s=0.3, max_s=2.0))
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


def runtime_names(asked: list[str] | None, torch_source: bool = False) -> list[str]:
    """The runtimes asked for, else every registered runtime that takes an ONNX file (capabilities, not names) and,
    for a PyTorch source, every PyTorch runtime that is not opt-in (torch-compile is, when named with -r)."""
    if asked:
        for n in asked:
            if not runtimes.get(n).caps.takes_onnx and not torch_source:
                raise UserError(f"{n} runs zoo checkpoints and PyTorch sources only, not an ONNX model")
        return list(asked)
    return [
        n
        for n in runtimes.names()
        if runtimes.get(n).caps.takes_onnx or (torch_source and not runtimes.get(n).caps.opt_in)
    ]


def _batches(req: Request, t: ModelTarget) -> list[int]:
    fixed = t.shapes.fixed_batch
    batches = parse_batches(req.batches or (str(fixed) if fixed else DEFAULT_BATCHES))
    if fixed and batches != [fixed]:
        raise UserError(f"{t.ref.onnx} fixes its batch axis at {fixed}; use --batch {fixed}")
    return batches


def run(req: Request) -> Profile:
    """Resolve, check, analyze, bench, check outputs, record and render one model (see the module docstring)."""
    for n in req.runtimes or []:
        runtimes.target(n)  # an unknown name is refused before the model is read
    check_request([], req.precisions, req.scopes)
    req.settings.validate()
    src = source.resolve(req.target, req.image_size, req.weights)
    names = runtime_names(req.runtimes, src.torch is not None)
    check_request(names, req.precisions, req.scopes, req.variants)
    t = model_target(src, req.options, threads=req.settings.threads or physical_cores())
    batches = _batches(req, t)
    check_memory([t], batches)
    results = Path(req.results)  # output problems are found before measuring, after the model's own
    BenchStore(results).check()
    read_csv(results / paths.ANALYSIS_CSV, "analysis")
    check_writable(Path(req.reports))
    analysis = analyze.analyze(src.path, batch=t.shapes.fixed_batch or 1, shapes=_analysis_shapes(t), name=src.key)
    upsert_rows(results / paths.ANALYSIS_CSV, analyze.tidy_rows(analysis), "analysis")
    res = bench.run([t], names, batches, req.precisions, req.scopes, req.settings, req.progress, results,
                    req.variants)  # fmt: skip
    record = write_record(src, t, analysis, results)
    appendix = render_model(results, src.slug, Path(req.reports))
    return Profile(src, analysis, res, record, appendix)


def _analysis_shapes(t: ModelTarget) -> dict:
    return {name: [t.shapes.fixed_batch or 1, *row] for name, row in t.shapes.rows.items()}


def write_record(src: Source, t: ModelTarget, analysis, results: Path) -> Path:
    """data/models/<slug>.json: what the model is (key, origin, inputs, outputs, opset) and how it was fed."""
    import onnx

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
        "host": host_id(),
        "host_label": host_label(),
        "timestamp": now(),
    }
    path = Path(results) / paths.MODEL_RECORDS / f"{src.slug}.json"
    write_json(path, record)
    return path
