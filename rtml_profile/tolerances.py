"""Parity tolerances, stated once: every check, message, table and report sentence is derived from TOLERANCE.

A runtime's outputs pass against the fp32 PyTorch CPU reference when max |diff| <= atol + rtol * max |reference|
and, for classifiers, at least `min_agreement` of the predicted classes are identical. int8 is judged on class
agreement alone for classifiers (quantized log-probabilities move by more than any useful absolute bound).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    min_agreement: float
    why: str = ""

    def bound(self, ref_max_abs: float) -> float:
        return self.atol + self.rtol * ref_max_abs

    def describe(self) -> str:
        parts = [f"max |diff| <= {self.atol:g}" + (f" + {self.rtol:g} x max |reference|" if self.rtol else "")]
        if self.min_agreement:
            parts.append(f"class agreement >= {self.min_agreement:.1%}")
        return " and ".join(parts)


# (precision, device) -> Tolerance
TOLERANCE: dict[tuple[str, str], Tolerance] = {
    ("fp32", "cpu"): Tolerance(1e-4, 0.0, 0.999, "same arithmetic, different kernels and summation order"),
    ("fp32", "cuda"): Tolerance(1e-3, 1e-3, 0.999, "GPU kernels; error scales with the outputs' magnitude"),
    # TF32 matrix units keep 10 mantissa bits (ORT CUDA's default); trained 2a/2b emit log-probabilities to ~-50
    ("tf32", "cuda"): Tolerance(1e-3, 1e-3, 0.999, "TF32 matrix units keep 10 mantissa bits"),
    ("fp16", "cuda"): Tolerance(5e-2, 2e-3, 0.99, "half precision: 11-bit mantissa"),
    ("int8", "cpu"): Tolerance(5e-2, 0.0, 0.95, "8-bit weights (and activations): judged by class agreement"),
    ("int8-static", "cpu"): Tolerance(5e-2, 0.0, 0.95, "8-bit weights and calibrated activations: class agreement"),
}

# Per-node error (the precision analysis): relative L2 error ||variant - fp32|| / ||fp32|| of a node's output over
# the compared rows. fp16 rounds to 11 bits (~5e-4 per value): 1% allows accumulation; 8-bit quantization steps
# are ~0.4% of a tensor's range, so 5% (a signal-to-quantization-noise ratio of 26 dB) flags a node that breaks.
NODE_TOLERANCE: dict[str, float] = {"fp16": 0.01, "int8": 0.05, "int8-static": 0.05}
REGRESSION_TIE = 0.01  # an R^2 change this small counts as no change when picking nodes to keep in fp32

EXPORT = TOLERANCE[("fp32", "cpu")]  # the ONNX export's own parity check (ONNX Runtime CPU vs PyTorch CPU)


def get(precision: str, device: str) -> Tolerance | None:
    return TOLERANCE.get((precision, device))


def class_agreement_only(precision: str) -> bool:
    return precision in ("int8", "int8-static")
