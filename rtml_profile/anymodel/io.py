"""A model's inputs and outputs as the graph declares them, and the inputs it is run on.

Axis 0 of an input is its batch axis when the graph leaves it dynamic; every other dynamic axis (named, like
"seq", or unnamed) needs a value: from --shape, or from the arrays of an --inputs .npz. A named dimension shared by
several inputs takes one value everywhere. Generated inputs are seeded: floats are standard normal (or uniform in
an --input-range), integers are drawn from their --input-range (there is no safe default for token ids or
indices), booleans are 0/1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import UserError
from rtml_profile.files import read_npz

SEED = 0


@dataclass(frozen=True)
class Tensor:
    """One graph input or output: dims hold ints, names of dynamic dimensions (str), or None (dynamic, unnamed)."""

    name: str
    dims: tuple
    dtype: str  # numpy dtype name

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def describe(self) -> str:
        return f"{self.dtype}[{', '.join('?' if d is None else str(d) for d in self.dims)}]"


def graph_io(model) -> tuple[list[Tensor], list[Tensor]]:
    """(inputs that are not initializers, outputs) of an onnx ModelProto."""
    from onnx import helper

    def tensor(vi) -> Tensor:
        tt = vi.type.tensor_type
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None) for d in tt.shape.dim
        )
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
        except Exception:
            raise UserError(f"{vi.name!r} is not a tensor of a numeric type (ONNX type {tt.elem_type})") from None
        return Tensor(vi.name, dims, dtype)

    inits = {i.name for i in model.graph.initializer}
    inputs = [tensor(i) for i in model.graph.input if i.name not in inits]
    for t in inputs:
        if t.np_dtype.kind not in "biuf":  # strings come back as object arrays: nothing to generate or time
            from onnx import TensorProto

            vi = next(i for i in model.graph.input if i.name == t.name)
            kind = TensorProto.DataType.Name(vi.type.tensor_type.elem_type)
            raise UserError(f"input {t.name!r} holds {kind} values ({t.dtype}); only numeric and boolean inputs can be "
                            "generated and timed here")  # fmt: skip
    return inputs, [tensor(o) for o in model.graph.output]


@dataclass
class Shapes:
    """One sample's shape per input (axis 0 removed when it is the batch axis) and the model's fixed batch, if any."""

    rows: dict[str, tuple[int, ...]]
    fixed_batch: int | None = None
    named: dict[str, int] = field(default_factory=dict)  # named dimension -> value


def _fits(t: Tensor, given: list[int], named: dict, source: str):
    if len(given) != len(t.dims):
        raise UserError(f"{source} gives input {t.name!r} {len(given)} axes; the model's is {t.describe()}")
    for axis, (d, g) in enumerate(zip(t.dims, given)):
        if isinstance(d, int) and d != g and axis > 0:
            raise UserError(f"{source} gives input {t.name!r} {g} at axis {axis}; the model fixes it at {d}")
        if isinstance(d, str) and axis > 0:
            if named.setdefault(d, g) != g:
                raise UserError(
                    f"{source} gives dimension {d!r} the value {g}, but another input already gave it {named[d]}"
                )


def resolve(inputs: list[Tensor], shapes: dict | None = None, arrays: dict | None = None) -> Shapes:
    """Concrete per-sample shapes: --shape first, then the .npz arrays; a dynamic non-batch axis left without a
    value, or a batch axis fixed to different values, raises UserError."""
    shapes, arrays = shapes or {}, arrays or {}
    unknown = set(shapes) - {t.name for t in inputs}
    if unknown:
        have = ", ".join(t.name for t in inputs)
        raise UserError(f"--shape names {', '.join(sorted(unknown))}, but the model's inputs are {have}")
    named: dict[str, int] = {}
    for t in inputs:
        if t.name in shapes:
            _fits(t, list(shapes[t.name]), named, f"--shape {t.name}=...")
    for t in inputs:
        if t.name in arrays and t.name not in shapes:
            _fits(t, list(arrays[t.name].shape), named, "the --inputs file")
    rows, batches = {}, set()
    for t in inputs:
        given = shapes.get(t.name) or (arrays[t.name].shape if t.name in arrays else None)
        dims = []
        for axis, d in enumerate(t.dims[1:], start=1):
            v = d if isinstance(d, int) else named.get(d) if isinstance(d, str) else None
            v = v if v is not None else (given[axis] if given is not None else None)
            if v is None:
                label = f"dimension {d!r}" if d else "an unnamed dynamic dimension"
                raise UserError(
                    f"input {t.name!r} ({t.describe()}) has {label} at axis {axis} with no value; give it with "
                    f"--shape {t.name}="
                    + ",".join(
                        str(x) if isinstance(x, int) else "1" if i == 0 else f"D{i + 1}" for i, x in enumerate(t.dims)
                    )
                )
            dims.append(int(v))
        rows[t.name] = tuple(dims)
        if t.dims and isinstance(t.dims[0], int):
            batches.add(t.dims[0])
    if len(batches) > 1:
        raise UserError(f"the model's inputs fix their first axis to different sizes ({sorted(batches)})")
    return Shapes(rows, batches.pop() if batches else None, named)


def parse_ranges(items: list[str], inputs: list[Tensor]) -> dict[str, tuple[float, float]]:
    """--input-range NAME=LOW,HIGH (HIGH exclusive) for inputs of the model."""
    out = {}
    by_name = {t.name: t for t in inputs}
    for item in items:
        name, sep, rest = item.partition("=")
        try:
            lo, hi = (float(v) for v in rest.split(","))
            if not (sep and lo < hi and np.isfinite([lo, hi]).all()):
                raise ValueError  # not an assert: user input is checked under python -O too
        except ValueError:
            raise UserError(f"--input-range takes NAME=LOW,HIGH with LOW < HIGH, got {item!r}") from None
        if name not in by_name:
            raise UserError(f"--input-range names {name!r}, but the model's inputs are {', '.join(sorted(by_name))}")
        out[name] = _fitting_range(item, by_name[name], *(v.strip() for v in rest.split(",")))
    return out


def _fitting_range(item: str, t: Tensor, low: str, high: str) -> tuple:
    """(LOW, HIGH) of one --input-range as values the input's type holds: for an integer input, whole numbers
    with LOW >= its minimum and HIGH - 1 <= its maximum (HIGH is exclusive), kept exact as Python ints; for a float
    input, bounds whose width is finite in that type. Anything else is one UserError (never a silent wrap)."""
    dt = t.np_dtype
    if dt.kind in "iu":
        try:
            lo, hi = (int(v) if v.lstrip("+-").isdigit() else _whole(float(v)) for v in (low, high))
        except ValueError:
            raise UserError(f"--input-range {item!r}: {t.name!r} holds integers ({t.dtype}); LOW and HIGH must be "
                            "whole numbers") from None  # fmt: skip
        info = np.iinfo(dt)
        if lo < int(info.min) or hi - 1 > int(info.max):
            raise UserError(f"--input-range {item!r}: {t.name!r} holds {t.dtype}, whose values run from {info.min} "
                            f"to {info.max} (HIGH is exclusive: at most {int(info.max) + 1})")  # fmt: skip
        return lo, hi
    if dt.kind == "f":
        lo, hi = float(low), float(high)
        top = float(np.finfo(dt).max)
        if max(abs(lo), abs(hi)) > top or not np.isfinite(hi - lo):
            raise UserError(f"--input-range {item!r}: {t.name!r} holds {t.dtype}, whose values stay within "
                            f"+-{top:.4g} (and HIGH - LOW must be finite)")  # fmt: skip
        return lo, hi
    return float(low), float(high)


def _whole(v: float) -> int:
    if not float(v).is_integer():
        raise ValueError(v)
    return int(v)


def check_ranges(inputs: list[Tensor], ranges: dict):
    """Every integer input has a range to draw from (generated inputs only)."""
    for t in inputs:
        if t.np_dtype.kind in "iu" and t.name not in ranges:
            raise UserError(
                f"input {t.name!r} holds integers ({t.dtype}) and has no range to draw them from; give "
                f"--input-range {t.name}=LOW,HIGH (HIGH exclusive, e.g. 0,VOCAB for token ids) or real inputs "
                f"with --inputs FILE.npz"
            )


def generate(inputs: list[Tensor], shapes: Shapes, batch: int, ranges: dict, seed: int = SEED) -> dict:
    """Seeded inputs for `batch` samples (the same for every runtime and every call)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for t in inputs:
        shape = (batch, *shapes.rows[t.name])  # a model with a fixed batch refuses other batches itself
        kind, r = t.np_dtype.kind, ranges.get(t.name)
        if kind in "iu":  # parse_ranges made (LOW, HIGH) whole numbers the dtype holds: drawn in it, never wrapped
            feeds[t.name] = rng.integers(int(np.ceil(r[0])), int(np.ceil(r[1])), shape, dtype=t.np_dtype)
        elif kind == "b":
            feeds[t.name] = rng.integers(0, 2, shape).astype(bool)
        elif r is not None:
            feeds[t.name] = rng.uniform(r[0], r[1], shape).astype(t.np_dtype)
        else:
            feeds[t.name] = rng.standard_normal(shape).astype(t.np_dtype)
    return feeds


def load_npz(path: Path, inputs: list[Tensor]) -> dict[str, np.ndarray]:
    """The arrays of an --inputs .npz, checked against the model's inputs (names, ranks, dtype kinds, one batch)."""

    path = Path(path)
    arrays = read_npz(path, "--inputs")
    want = [t.name for t in inputs]
    if set(arrays) != set(want):
        raise UserError(
            f"{path} holds {', '.join(sorted(arrays)) or 'no arrays'}, but the model's inputs are {', '.join(want)}"
        )
    out = {}
    for t in inputs:
        a = arrays[t.name]
        if a.ndim != len(t.dims) or a.ndim == 0:
            raise UserError(f"{path}: {t.name!r} has shape {list(a.shape)}; the model's input is {t.describe()}")
        kinds = {"f": "f", "i": "iu", "u": "iu", "b": "b"}
        if a.dtype.kind not in kinds.get(t.np_dtype.kind, t.np_dtype.kind):
            raise UserError(f"{path}: {t.name!r} holds {a.dtype}; the model's input is {t.describe()}")
        if a.dtype.kind in "iu" and a.size and t.np_dtype.kind in "iu":  # int64 into int32 must not wrap
            info, lo, hi = np.iinfo(t.np_dtype), int(a.min()), int(a.max())
            if lo < int(info.min) or hi > int(info.max):
                raise UserError(f"{path}: {t.name!r} holds values from {lo} to {hi}, outside what the model's "
                                f"{t.dtype} input holds ({info.min} to {info.max}); refused, not wrapped")  # fmt: skip
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow to inf is refused just below
            out[t.name] = np.ascontiguousarray(a.astype(t.np_dtype, copy=False))
        if out[t.name].dtype.kind == "f" and not np.isfinite(out[t.name]).all():
            bad = int((~np.isfinite(out[t.name])).sum())
            raise UserError(f"{path}: {t.name!r} holds {bad} NaN or infinite value(s) (as {t.np_dtype}); inputs must "
                            f"be finite")  # fmt: skip
    rows = {len(a) for a in out.values()}
    if len(rows) > 1:
        raise UserError(f"{path}: its arrays hold different numbers of samples ({sorted(rows)}) along axis 0")
    return out


def tile(arrays: dict, batch: int) -> dict:
    """`batch` samples of real inputs (tiled when there are fewer)."""
    n = len(next(iter(arrays.values())))
    idx = np.arange(batch) % n
    return {k: np.ascontiguousarray(v[idx]) for k, v in arrays.items()}
