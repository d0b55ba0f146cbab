"""Training speed of model 2b: rtml-profile's trainer against a bare PyTorch loop over the same tensors.

Side by side in one run (same model, batch 64, SGD lr 1e-2, data resident on the device), alternating bare and
trainer epochs so machine noise hits both. On a GPU it also times the CUDA-graph train step and checks that its
results match eager training in distribution (same seed, same number of epochs). Also times loading CIFAR-10
from the decoded cache.

    python benchmarks/train_speed.py --data-dir ../shared/data --epochs 3 [--device cuda] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def bare_epoch(model, opt, X, Y, bs, gen, device):
    import torch
    import torch.nn.functional as F

    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    perm = torch.randperm(len(X), generator=gen, device=device)
    for i in range(0, len(X), bs):
        idx = perm[i : i + bs]
        loss = F.nll_loss(model(X[idx]), Y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--graph-epochs", type=int, default=10, help="epochs for the eager vs CUDA-graph comparison")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    import torch

    from rtml_profile import data as datamod
    from rtml_profile import zoo
    from rtml_profile.files import write_json
    from rtml_profile.host import environment, physical_cores
    from rtml_profile.train import train

    t0 = time.perf_counter()
    ds = datamod.load("cifar10", a.data_dir)
    load_s = time.perf_counter() - t0
    spec = zoo.get("2b")
    torch.set_num_threads(physical_cores())
    recipe = zoo.with_overrides(spec.recipe, epochs=1)
    X = torch.as_tensor(ds.x_train, device=a.device)
    Y = torch.as_tensor(ds.y_train, device=a.device)
    torch.manual_seed(0)
    model = zoo.build(spec).to(a.device)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr)
    gen = torch.Generator(device=a.device).manual_seed(0)

    bare, ours_train, ours_total = [], [], []  # ours_total: training pass + that epoch's validation
    bare_epoch(model, opt, X, Y, recipe.batch_size, gen, a.device)  # warm-up
    for e in range(a.epochs):
        bare.append(bare_epoch(model, opt, X, Y, recipe.batch_size, gen, a.device))
        r = train(spec, ds, recipe, device=a.device, seed=e, progress=False)
        ours_train.append(r.history[0]["epoch_time_s"])
        ours_total.append(r.history[0]["epoch_time_s"] + r.history[0]["eval_time_s"])
        print(
            f"epoch {e + 1}: bare {bare[-1]:.3f} s, trainer {ours_train[-1]:.3f} s "
            f"(with its per-epoch validation {ours_total[-1]:.3f} s)",
            file=sys.stderr,
        )
    out = {
        "what": "2b, batch 64, SGD; seconds per epoch (device synchronized); medians over epochs run alternately",
        "cache_load_s": load_s,
        "device": a.device,
        "bare_epoch_s": bare,
        "trainer_epoch_s": ours_train,
        "trainer_epoch_with_validation_s": ours_total,
        "ratio_train_pass": float(np.median(ours_train) / np.median(bare)),
        "ratio_with_validation": float(np.median(ours_total) / np.median(bare)),
        "environment": environment(),
    }
    if a.device == "cuda":
        runs = {}
        for graph in (False, True):
            r = train(
                spec,
                ds,
                zoo.with_overrides(spec.recipe, epochs=a.graph_epochs),
                device="cuda",
                seed=0,
                progress=False,
                cuda_graph=graph,
            )
            runs["cuda_graph" if graph else "eager"] = {
                "epoch_s_median": r.timings["epoch_s_median"],
                "val_accuracy": [h["val_accuracy"] for h in r.history],
                "train_loss": [h["train_loss"] for h in r.history],
                "final_val_accuracy": r.final["val"]["accuracy"],
            }
        e, g = runs["eager"], runs["cuda_graph"]
        runs["speedup"] = e["epoch_s_median"] / g["epoch_s_median"]
        runs["max_abs_val_accuracy_diff"] = float(np.max(np.abs(np.subtract(e["val_accuracy"], g["val_accuracy"]))))
        runs["max_rel_train_loss_diff"] = float(
            np.max(np.abs(np.subtract(e["train_loss"], g["train_loss"])) / np.asarray(e["train_loss"]))
        )
        out["eager_vs_cuda_graph"] = runs
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        write_json(a.out, out)


if __name__ == "__main__":
    main()
