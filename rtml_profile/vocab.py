"""Names used in every layer: scopes, precisions, variants, and the byte widths the cost models use.

Data only (no imports of the package): runtimes, the measurement core, scenarios and the report all read these.
"""

from __future__ import annotations

SCOPES = ("compute", "end-to-end", "cuda-graph")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "int8-static")
CALIBRATED = ("int8-static",)  # precisions built from calibration data (a seeded subset of the training split)
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_BUDGETS_MS = (33.3,)  # the report's latency budgets: one frame at 30 fps (others: `--budget`)
SEED_MAX = 2**32 - 1  # numpy, torch and CUDA generators all take seeds 0..2**32-1
# load's ranges, declared once: the CLI's options (cli.params) show and check them, the scenario checks the same
LOAD_DURATION_MAX_S = 600  # --duration: (0, 600] seconds per trial
LOAD_TRIALS_MAX = 20  # --trials: [1, 20] bisection steps
LOAD_QUERIES_MAX = 1_000_000  # --queries (offline): [1, 1,000,000]
LOAD_MAX_QUERIES_MIN = 300  # --max-queries: LoadGen's max_query_count, at least 300
LOAD_KEEP_ALIVE_MAX_MS = 1000  # --keep-alive: [0, 1000] ms
LOAD_SAMPLES_MAX = 2_000_000  # most samples one load run may schedule (LoadGen holds its whole schedule in memory)
TUNED = "tuned"  # the variant `bench --tune` adds beside a runtime's own ("<variant>+tuned" when it has one)

SCOPE_MEANS = {
    "compute": "one call on inputs already where the runtime wants them (device tensors / IO binding), outputs "
    "left there; host clock around call + device synchronize",
    "end-to-end": "host numpy array in, host numpy array out: conversions and host<->device copies included",
    "cuda-graph": "compute scope, forward replayed from a captured CUDA graph; host clock + device synchronize",
}

WEIGHT_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "int8": 1}
ACT_BYTES = 4  # activations at the graph's float32 inputs and outputs (derived graphs keep fp32 I/O)


def base_variant(variant: str) -> str:
    """The runtime's own variant under a tuned one ('default+tuned' -> 'default', 'tuned' -> '')."""
    if variant == TUNED:
        return ""
    return variant.removesuffix("+" + TUNED)


def tuned_name(variant: str) -> str:
    """The tuned variant of a runtime's own variant ('' -> 'tuned', 'default' -> 'default+tuned')."""
    return f"{variant}+{TUNED}" if variant else TUNED
