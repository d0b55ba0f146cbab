"""Parity tolerances, stated once: every check, message, table and report sentence is derived from TOLERANCE.

A runtime's outputs pass against the fp32 PyTorch CPU reference when max |diff| <= atol + rtol * max |reference|
and, for classifiers, at least `min_agreement` of the predicted classes are identical. int8 is judged on class
agreement alone for classifiers (quantized log-probabilities move by more than any useful absolute bound).

Output checks of any model (`rtml-profile profile`) use the same table under OUTPUT_CHECK_RULE.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    min_agreement: float
    why: str = ""
    agreement_only: bool = False  # classifiers are judged by class agreement alone (regressors by the bound)
    stat: str = "max"  # output checks: the error statistic that must stay within the bound ("max" or "p99")
    check_rtol: float | None = None  # output checks: rtol when it differs from the zoo's parity rtol

    @property
    def output_rtol(self) -> float:
        return self.rtol if self.check_rtol is None else self.check_rtol

    def bound(self, ref_max_abs: float) -> float:
        return self.atol + self.rtol * ref_max_abs

    def bound_text(self) -> str:
        return f"max |diff| <= {self.atol:g}" + (f" + {self.rtol:g} x max |reference|" if self.rtol else "")

    def describe(self) -> str:
        bound = self.bound_text()
        agree = f"class agreement >= {self.min_agreement:.1%}"
        if self.agreement_only:
            return f"classifiers: {agree}; regressors: {bound}"
        return f"{bound} and, for classifiers, {agree}"


# (precision, device) -> Tolerance
TOLERANCE: dict[tuple[str, str], Tolerance] = {
    ("fp32", "cpu"): Tolerance(1e-4, 0.0, 0.999, "same arithmetic, different kernels and summation order"),
    ("fp32", "cuda"): Tolerance(1e-3, 1e-3, 0.999, "GPU kernels; error scales with the outputs' magnitude"),
    # TF32 matrix units keep 10 mantissa bits (ORT CUDA's default); trained 2a/2b emit log-probabilities to ~-50
    ("tf32", "cuda"): Tolerance(1e-3, 1e-3, 0.999, "TF32 matrix units keep 10 mantissa bits"),
    ("fp16", "cuda"): Tolerance(5e-2, 2e-3, 0.99, "half precision: 11-bit mantissa"),
    # CPU bf16 (OpenVINO's bf16 inference precision): bf16 keeps 8 bits of mantissa, so every rounded operand is off
    # by up to 2^-8 (0.4%) relative; oneDNN accumulates in f32, but the error of each layer's rounded inputs and
    # weights adds up over the layers: 2% of the output's scale (about 5 x 2^-8) plus 0.01 for outputs near zero
    ("bf16", "cpu"): Tolerance(1e-2, 2e-2, 0.99, "bfloat16: 8-bit mantissa (2^-8 relative per op, accumulating)"),
    ("fp16", "cpu"): Tolerance(5e-2, 2e-3, 0.99, "half precision: 11-bit mantissa"),
    # output checks: dynamic int8 (per-tensor activation scales recomputed every call) through tens of layers moves
    # outputs by tens of percent of their scale; the check catches a broken conversion, not the accuracy cost
    ("int8", "cpu"): Tolerance(
        5e-2,
        0.0,
        0.95,
        "8-bit weights (and activations) move log-probabilities",
        agreement_only=True,
        stat="p99",
        check_rtol=0.5,
    ),
    # static int8: activation scales fixed from calibration data; checked like dynamic int8
    ("int8-static", "cpu"): Tolerance(
        5e-2,
        0.0,
        0.95,
        "8-bit weights and calibrated activations: class agreement",
        agreement_only=True,
        stat="p99",
        check_rtol=0.5,
    ),
}

OUTPUT_CHECK_RULE = (
    "Per output, against the fp32 ONNX Runtime CPU reference: the error statistic `stat` of |diff| (max; the 99th "
    "percentile for int8, where a few elements may move more) must be <= atol + rtol x max |reference|; no element "
    "may turn NaN or infinite where the reference is finite; outputs that look like class scores (2-D, scores along "
    "the last axis) need top-1 agreement >= min_agreement on the decisive rows, those whose two best reference "
    "scores are further apart than twice that bound (a flip between scores closer than the tolerated error says "
    "nothing about the runtime). int8's rtol of 0.5 catches a broken conversion (wrong scales, layout or sign: errors "
    "of the output's own size), not int8's accuracy cost, which needs real data and a task metric."
)

# Per-node error (the precision analysis): relative L2 error ||variant - fp32|| / ||fp32|| of a node's output over
# the compared rows. fp16 rounds to 11 bits (~5e-4 per value): 1% allows accumulation; 8-bit quantization steps
# are ~0.4% of a tensor's range, so 5% (a signal-to-quantization-noise ratio of 26 dB) flags a node that breaks.
NODE_TOLERANCE: dict[str, float] = {"fp16": 0.01, "int8": 0.05, "int8-static": 0.05}
REGRESSION_TIE = 0.01  # an R^2 change this small counts as no change when picking nodes to keep in fp32

EXPORT = TOLERANCE[("fp32", "cpu")]  # the ONNX export's own parity check (ONNX Runtime CPU vs PyTorch CPU)


def get(precision: str, device: str) -> Tolerance | None:
    return TOLERANCE.get((precision, device))


def class_agreement_only(precision: str) -> bool:
    tol = TOLERANCE.get((precision, "cpu")) or TOLERANCE.get((precision, "cuda"))
    return bool(tol and tol.agreement_only)
