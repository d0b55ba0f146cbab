"""The HW2 model registry: id -> architecture, task, data set and default training recipe.

Every other part of the toolkit (training, export, analysis, benchmark, tests) is driven from `MODELS`, so a
model added here is covered everywhere.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field, replace

from rtml_profile import UserError


@dataclass(frozen=True)
class Recipe:
    """HW2's training recipe. `batch_size` None means full-batch gradient descent."""

    optimizer: str = "sgd"
    lr: float = 1e-2
    loss: str = "mse"
    batch_size: int | None = None
    epochs: int = 200


@dataclass(frozen=True)
class ModelSpec:
    id: str
    description: str
    task: str  # "regression" | "classification"
    dataset: str  # "housing" | "cifar10"
    in_features: int
    hidden: tuple[int, ...]
    out_features: int
    params: int  # the count HW2.md states; checked against the built model by the tests
    recipe: Recipe = field(default_factory=Recipe)

    @property
    def log_softmax(self) -> bool:
        return self.task == "classification"

    @property
    def metric(self) -> str:
        """Name of the headline task metric (higher is better for both)."""
        return "accuracy" if self.task == "classification" else "r2"

    def to_dict(self) -> dict:
        return asdict(self)


_REGRESSION = Recipe(optimizer="sgd", lr=1e-2, loss="mse", batch_size=None, epochs=200)
_CLASSIFICATION = Recipe(optimizer="sgd", lr=1e-2, loss="nll", batch_size=64, epochs=300)

MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in [
        ModelSpec("1a", "house price, 5-8-1 tanh MLP", "regression", "housing", 5, (8,), 1, 57, _REGRESSION),
        ModelSpec(
            "1b",
            "house price, 5-256-128-64-1 tanh MLP",
            "regression",
            "housing",
            5,
            (256, 128, 64),
            1,
            42_753,
            _REGRESSION,
        ),
        ModelSpec(
            "2a",
            "CIFAR-10, 3072-512-10 tanh MLP",
            "classification",
            "cifar10",
            3072,
            (512,),
            10,
            1_578_506,
            _CLASSIFICATION,
        ),
        ModelSpec(
            "2b",
            "CIFAR-10, 3072-512-256-128-10 tanh MLP",
            "classification",
            "cifar10",
            3072,
            (512, 256, 128),
            10,
            1_738_890,
            _CLASSIFICATION,
        ),
    ]
}


def list_models() -> list[str]:
    return list(MODELS)


def get(model_id: str) -> ModelSpec:
    try:
        return MODELS[model_id]
    except KeyError:
        raise UserError(f"unknown model id {model_id!r}; valid ids: {', '.join(MODELS)}") from None


def resolve(ids: str | list[str]) -> list[ModelSpec]:
    """'all', one id, or a list of ids -> specs (unknown ids raise UserError)."""
    ids = [ids] if isinstance(ids, str) else list(ids)
    if ids == ["all"]:
        return list(MODELS.values())
    return [get(i) for i in ids]


def with_overrides(recipe: Recipe, **overrides) -> Recipe:
    """The recipe with every override that is not None applied, validated (no heavy imports: it runs first)."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    for name in ("epochs", "batch_size"):
        if name in changes and (
            isinstance(changes[name], bool) or not isinstance(changes[name], int) or changes[name] <= 0
        ):
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {changes[name]}")
    if "lr" in changes and not (math.isfinite(changes["lr"]) and changes["lr"] > 0):
        raise UserError(f"--lr must be positive and finite, got {changes['lr']}")
    return replace(recipe, **changes)


def build(spec: ModelSpec):
    """A fresh torch.nn.Sequential for `spec` (Linear/Tanh stack, LogSoftmax head for classifiers)."""
    from torch import nn

    sizes = [spec.in_features, *spec.hidden, spec.out_features]
    layers: list = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    if spec.log_softmax:
        layers.append(nn.LogSoftmax(dim=1))
    return nn.Sequential(*layers)
