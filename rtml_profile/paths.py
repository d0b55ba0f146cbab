"""The project's folders and file names, spelled once. Paths are relative to the working directory (the project).

models/<id>.pt + models/<id>.json     checkpoint (tensors and plain data only) and its training record
exported/<id>.onnx                    the fp32 export
exported/derived/                     artifacts derived from an ONNX file (int8/fp16 files, TensorRT engines),
                                      keyed by the source's content and the settings; never beside a user's file
reports/data/                         result files (committed): train_<id>.json, analysis.csv, bench.csv, samples/,
                                      checks.csv and models/<slug>.json (profiled models)
reports/models/                       one appendix per profiled model (rtml-profile profile)
"""

from __future__ import annotations

from pathlib import Path

MODELS = Path("models")
EXPORTED = Path("exported")
DERIVED = EXPORTED / "derived"
REPORTS = Path("reports")
DATA = REPORTS / "data"
REPORT = REPORTS / "REPORT.md"
BENCH_CSV = "bench.csv"
ANALYSIS_CSV = "analysis.csv"
CHECKS_CSV = "checks.csv"  # output checks of profiled models (rtml-profile profile)
LOAD_CSV = "load.csv"  # rtml-profile load: one row per trial
DECISIONS_CSV = "decisions.csv"  # rtml-profile decide: one row per model x machine x arrival pattern x deadline
PRECISION_NODES_CSV, PRECISION_FIXES_CSV = "precision_nodes.csv", "precision_fixes.csv"  # rtml-profile precision
MODEL_RECORDS = "models"  # reports/data/models/<slug>.json: what a profiled model is and how it was run
MODEL_REPORTS = REPORTS / "models"  # reports/models/<slug>.md (+ figures/): one appendix per profiled model


def checkpoint(model_id: str) -> Path:
    return MODELS / f"{model_id}.pt"


def model_record(model_id: str) -> Path:
    return MODELS / f"{model_id}.json"


def onnx(model_id: str) -> Path:
    return EXPORTED / f"{model_id}.onnx"


def train_record(model_id: str, data: Path = DATA) -> Path:
    return Path(data) / f"train_{model_id}.json"


def missing_export(model_id: str) -> str:
    """The one sentence for a zoo model that has not been trained and exported yet."""
    return f"no export at {onnx(model_id)}; run `rtml-profile train-and-export {model_id}` first"


def missing_checkpoint(model_id: str) -> str:
    return f"no checkpoint at {checkpoint(model_id)}; run `rtml-profile train-and-export {model_id}` first"
