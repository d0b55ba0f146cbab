"""models, train-and-export and all: the zoo, training and the whole pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rtml_profile import paths
from rtml_profile.cli.app import app, echo_table, friendly
from rtml_profile.cli.bench import finish_bench
from rtml_profile.cli.params import Budget, DataDir, Quiet
from rtml_profile.vocab import DEFAULT_BUDGETS_MS


@app.command()
@friendly
def models():
    """List the zoo: id, task, data set, parameters and the default (HW2) recipe."""
    from rtml_profile.zoo import MODELS

    echo_table(
        [
            {
                "id": s.id,
                "description": s.description,
                "task": s.task,
                "data": s.dataset,
                "params": s.params,
                "optimizer": s.recipe.optimizer,
                "lr": s.recipe.lr,
                "loss": s.recipe.loss,
                "batch": s.recipe.batch_size or "full",
                "epochs": s.recipe.epochs,
            }
            for s in MODELS.values()
        ]
    )


@app.command("train-and-export")
@friendly
def train_and_export(
    model: Annotated[str, typer.Argument(help="Model id (1a, 1b, 2a, 2b) or 'all'.")],
    data_dir: DataDir = None,
    epochs: Annotated[int | None, typer.Option(help="Override the recipe's epochs.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the batch size.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialization, split and shuffling.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    cuda_graph: Annotated[
        bool, typer.Option(help="Replay each train step from a captured CUDA graph (--device cuda).")
    ] = False,
    subset: Annotated[
        int | None, typer.Option(help="Train on a seeded subset of N rows (N/5 validation rows); for quick runs.")
    ] = None,
    download: Annotated[
        bool, typer.Option(help="Download CIFAR-10 through torchvision into the data folder first.")
    ] = False,
    quiet: Quiet = False,
):
    """Train with the HW2 recipe (or overrides), save models/<id>.pt and its record, export exported/<id>.onnx."""
    from rtml_profile import pipeline, zoo

    options = {
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "device": device,
        "cuda_graph": cuda_graph,
        "subset": subset,
        "download": download,
    }
    specs = zoo.resolve(model)
    for spec in specs:  # every argument mistake shows before any training (and before torch is imported)
        pipeline.check_training(spec.id, data_dir, **options)
    for spec in specs:
        print_training(pipeline.train_and_export(spec.id, data_dir, quiet=quiet, **options))


def print_training(r: dict):
    o, t, val = r["overfitting"], r["timings"], r["final"]["val"]
    m = o["metric"]
    extra = (
        f", MAE {val['mae']:,.0f}, RMSE {val['rmse']:,.0f} (HW2 ratio 'accuracy' {val['hw2_ratio_accuracy']:.4f})"
        if m == "r2"
        else ""
    )
    typer.echo(
        f"{r['model']}: {r['recipe']['epochs']} epochs on {r['device']} in {t['train_s']:.1f} s "
        f"({t['epoch_s_mean']:.3f} s/epoch); final train loss (epoch mean) {r['history'][-1]['train_loss']:.4g}; "
        f"validation {m} {val[m]:.4f}{extra}; best validation {m} {o['best_val_metric']:.4f} at epoch "
        f"{o['best_val_epoch']}; train-val gap {o['final_gap']:+.4f}"
    )

    typer.echo(
        f"  wrote {r['checkpoint']}, {paths.model_record(r['model'])}, {paths.train_record(r['model'])}, "
        f"{r['export']['path']} (opset {r['export']['opset']}, parity max |diff| "
        f"{r['export']['parity_max_abs_diff']:.2g})"
    )


@app.command("all")
@friendly
def all_cmd(
    data_dir: DataDir = None,
    epochs: Annotated[Optional[int], typer.Option(help="Override every model's epochs (default: HW2's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for training.")] = 0,
    device: Annotated[str, typer.Option(help="Training device: cpu, cuda or auto.")] = "auto",
    batch: Annotated[Optional[str], typer.Option(help="Benchmark batch sizes (default 1,16,64,256,1024).")] = None,
    min_time: Annotated[float, typer.Option(help="Minimum seconds per benchmark configuration.")] = 0.3,
    max_time: Annotated[float, typer.Option(help="Maximum seconds per benchmark configuration.")] = 2.0,
    budget: Budget = None,
    subset: Annotated[
        Optional[int], typer.Option(help="Train each model on a seeded subset of N rows (quick runs).", min=10)
    ] = None,
    quiet: Quiet = False,
):
    """The whole pipeline for every zoo model: train-and-export -> analyze -> bench -> report."""
    from rtml_profile.pipeline import run_all

    res = run_all(data_dir, epochs=epochs, seed=seed, device=device, batches=batch, min_time=min_time,
                  max_time=max_time, budgets_ms=list(budget or DEFAULT_BUDGETS_MS), quiet=quiet, say=typer.echo,
                  subset=subset)  # fmt: skip
    for r in res.records:
        print_training(r)
    from rtml_profile.scenarios.loadgen import peak_lines

    for line in peak_lines(res.load or []):
        typer.echo(line)
    finish_bench(res.bench, Path("reports/data"), None)
    typer.echo(f"wrote {res.report} and its figures in {res.report.parent / 'figures'}")
