"""Training over tensors resident on the training device, with an honest per-epoch history.

Per epoch: mean train loss over every sample of the epoch (each batch weighted by its size), the train metric
over the predictions made during the epoch, validation loss and metric with the epoch's final weights, and the
epoch's training time (device synchronized, evaluation excluded; evaluation is timed separately).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rtml_profile import UserError, metrics, stats
from rtml_profile.batching import in_chunks
from rtml_profile.cuda_graphs import capture
from rtml_profile.data.common import Dataset
from rtml_profile.host import physical_cores
from rtml_profile.zoo import ModelSpec, Recipe, build

EVAL_CHUNK = 4096
GRAPH_WARMUP_STEPS = 3


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but PyTorch sees no CUDA device here; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise UserError(f"unknown device {device!r}; use cpu, cuda or auto")
    return device


def _loss_fn(spec: ModelSpec):
    import torch.nn.functional as F

    return F.nll_loss if spec.task == "classification" else F.mse_loss


def _sync(device: str):
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def predict(model, x, chunk: int = EVAL_CHUNK):
    """Model outputs for tensor `x` in chunks, without gradients, as one tensor on x's device."""
    import torch

    model.eval()
    with torch.inference_mode():
        out = in_chunks(model, x, chunk, concat=torch.cat)
    model.train()
    return out


def evaluate(spec: ModelSpec, model, x, y, info: dict, full: bool = True) -> dict:
    """Loss and task metrics of `model` on tensors x, y. `full=False` skips per-class accuracy/confusion."""
    out = predict(model, x)
    loss = float(_loss_fn(spec)(out, y))
    m = metrics.task_metrics(spec.task, out.float().cpu().numpy(), y.cpu().numpy(), info)
    if not full:
        m = {k: v for k, v in m.items() if k not in ("per_class_accuracy", "confusion_matrix")}
    return {"loss": loss, **m}


class _Stepper:
    """One optimization step over a batch of row indices; eager, or replayed from a captured CUDA graph.

    The graph path captures gather, forward, backward, SGD update and the loss/accuracy accumulation, so one
    replay is one launch. It applies to full-size batches only; a smaller last batch runs eagerly.
    """

    def __init__(self, spec, model, opt, X, Y, batch_size, cuda_graph: bool):
        import torch

        self.spec, self.model, self.opt, self.X, self.Y = spec, model, opt, X, Y
        self.loss_fn = _loss_fn(spec)
        self.classify = spec.task == "classification"
        self.loss_sum = torch.zeros((), device=X.device)
        self.correct = torch.zeros((), device=X.device, dtype=torch.long)
        self.batch_size = batch_size
        self.use_graph = cuda_graph
        self.graph = None
        self.warm = 0
        self.outputs: list = []  # (idx, out) pairs, kept for regression metrics only

    def reset(self):
        self.loss_sum.zero_()
        self.correct.zero_()
        self.outputs = []

    def _body(self, idx):
        xb, yb = self.X.index_select(0, idx), self.Y.index_select(0, idx)
        out = self.model(xb)
        loss = self.loss_fn(out, yb)
        loss.backward()
        self.opt.step()
        self.loss_sum.add_(loss.detach() * idx.numel())
        if self.classify:
            self.correct.add_((out.detach().argmax(1) == yb).sum())
        return out.detach()

    def eager(self, idx):
        self.opt.zero_grad(set_to_none=True)
        out = self._body(idx)
        if not self.classify:
            self.outputs.append((idx, out))

    def __call__(self, idx):
        if not (self.use_graph and idx.numel() == self.batch_size):
            return self.eager(idx)
        import torch

        if self.graph is not None:
            self.static_idx.copy_(idx)
            self.graph.replay()
            return
        # the warm-up steps are real training steps on this epoch's batches, run eagerly on a side stream (as
        # capture requires); after the last one the step is captured with no further warm-up (capture runs nothing)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.eager(idx)
        torch.cuda.current_stream().wait_stream(side)
        self.warm += 1
        if self.warm >= GRAPH_WARMUP_STEPS:
            self.static_idx = idx.clone()
            self.opt.zero_grad(set_to_none=True)
            self.graph, _ = capture(lambda: self._body(self.static_idx), warmup=0)

    def epoch_outputs(self):
        """Train-set predictions of this epoch (regression), in the order of the row indices."""
        import torch

        idx = torch.cat([i for i, _ in self.outputs])
        out = torch.cat([o for _, o in self.outputs])
        return out[torch.argsort(idx)]


@dataclass
class TrainResult:
    model: object
    history: list[dict]
    final: dict
    overfitting: dict
    timings: dict
    device: str


def overfitting_summary(history: list[dict], metric: str) -> dict:
    """Train-validation gap, best validation epoch (by metric and by loss) and final-vs-best difference."""
    val = np.array([h[f"val_{metric}"] for h in history], dtype=float)
    vloss = np.array([h["val_loss"] for h in history], dtype=float)
    best = int(np.nanargmax(val)) if np.isfinite(val).any() else len(val) - 1
    best_loss = int(np.nanargmin(vloss)) if np.isfinite(vloss).any() else len(vloss) - 1
    last = history[-1]
    return {
        "metric": metric,
        "best_val_epoch": best + 1,
        "best_val_metric": float(val[best]),
        "final_val_metric": float(val[-1]),
        "final_minus_best": float(val[-1] - val[best]),
        "min_val_loss_epoch": best_loss + 1,
        "min_val_loss": float(vloss[best_loss]),
        "final_val_loss": float(vloss[-1]),
        "final_gap": float(last[f"train_{metric}"] - last[f"val_{metric}"]),
        "max_gap": float(np.nanmax([h["gap"] for h in history])),
    }


def train(
    spec: ModelSpec,
    data: Dataset,
    recipe: Recipe,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    cuda_graph: bool = False,
    threads: int | None = None,
) -> TrainResult:
    """Train `spec` on `data` with `recipe`. Same seed, device and threads on CPU -> same final metrics."""
    import torch

    if cuda_graph and device != "cuda":
        raise UserError("--cuda-graph needs --device cuda")
    torch.set_num_threads(threads or physical_cores())
    torch.manual_seed(seed)
    model = build(spec).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr)
    t = _Tensors(spec, data, device)
    bs = min(recipe.batch_size or t.n, t.n)
    gen = torch.Generator(device=device).manual_seed(seed)
    step = _Stepper(spec, model, opt, t.X, t.Y, bs, cuda_graph)
    history: list[dict] = []
    bar = _progress(progress, spec.id, recipe.epochs)
    with bar:
        task = bar.add_task(f"train {spec.id}", total=recipe.epochs, status="")
        for epoch in range(1, recipe.epochs + 1):
            _sync(device)
            t0 = time.perf_counter()
            step.reset()
            perm = torch.randperm(t.n, generator=gen, device=device) if bs < t.n else torch.arange(t.n, device=device)
            for i in range(0, t.n, bs):
                step(perm[i : i + bs])
            _sync(device)
            row = _epoch_row(spec, data, t, step, epoch, t0)
            history.append(row)
            bar.update(
                task,
                advance=1,
                status=f"loss {row['train_loss']:.4g}  val {spec.metric} {row[f'val_{spec.metric}']:.4f}",
            )
    t_final = time.perf_counter()
    final = {"train": evaluate(spec, model, t.X, t.Y, data.info), "val": evaluate(spec, model, t.Xv, t.Yv, data.info)}
    timings = _timings(history, time.perf_counter() - t_final, t.n, bs)
    return TrainResult(model.cpu(), history, final, overfitting_summary(history, spec.metric), timings, device)


class _Tensors:
    """The data set's splits as tensors on the training device."""

    def __init__(self, spec: ModelSpec, data: Dataset, device: str):
        import torch

        ydtype = torch.long if spec.task == "classification" else torch.float32
        self.X = torch.as_tensor(data.x_train, device=device)
        self.Y = torch.as_tensor(data.y_train, device=device, dtype=ydtype)
        self.Xv = torch.as_tensor(data.x_val, device=device)
        self.Yv = torch.as_tensor(data.y_val, device=device, dtype=ydtype)
        self.n = len(self.X)


def _epoch_row(spec: ModelSpec, data: Dataset, t: _Tensors, step: _Stepper, epoch: int, t0: float) -> dict:
    """One history row: the epoch's training (timed from t0 to now) and a validation pass (timed apart)."""
    t1 = time.perf_counter()
    metric = spec.metric
    row = {"epoch": epoch, "train_loss": float(step.loss_sum) / t.n}
    if not np.isfinite(row["train_loss"]):
        raise UserError(
            f"training {spec.id} diverged at epoch {epoch} (loss is {row['train_loss']}); try a smaller --lr"
        )
    if spec.task == "classification":
        row[f"train_{metric}"] = int(step.correct) / t.n
    else:
        out = step.epoch_outputs().cpu().numpy()
        row[f"train_{metric}"] = metrics.regression(
            out, data.y_train, data.info["target_min"], data.info["target_max"]
        )["r2"]
    v = evaluate(spec, step.model, t.Xv, t.Yv, data.info, full=False)
    row.update({f"val_{k}": val for k, val in v.items()})
    row["gap"] = row[f"train_{metric}"] - row[f"val_{metric}"]
    row["epoch_time_s"] = t1 - t0
    row["eval_time_s"] = time.perf_counter() - t1
    return row


def _timings(history: list[dict], final_eval_s: float, n: int, bs: int) -> dict:
    epoch_times = [h["epoch_time_s"] for h in history]
    return {
        "train_s": float(sum(epoch_times)),
        "epoch_s_mean": float(np.mean(epoch_times)),
        "epoch_s_median": stats.percentile(epoch_times, 50),
        "eval_s": float(sum(h["eval_time_s"] for h in history)),
        "final_eval_s": final_eval_s,
        "steps_per_epoch": -(-n // bs),
        "what": "train_s sums the epochs' training passes (device synchronized); per-epoch validation is in eval_s",
    }


def _progress(enabled: bool, model_id: str, epochs: int):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        disable=not enabled,
        transient=False,
    )
