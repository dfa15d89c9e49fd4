#!/usr/bin/env python3
"""The baseline sweep-gpu is measured against: the same grid done the way the
2020 study did it, in PyTorch, one variant at a time, but vectorised (every
quantizer is a handful of tensor ops over a whole weight tensor, no Python loop
per weight).

Grid: mlp-complex ([13, 20, 40, 60, 30, 2]) on churn's test split (2,000 rows),
7 methods x bits 1..=16 x 32 seeds for the stochastic methods = 1,600 variants,
each quantizing every layer's weight tensor (per layer) and scoring accuracy.

Usage (CPU PyTorch, e.g. `pip install torch --index-url https://download.pytorch.org/whl/cpu`):
    python3 benches/pytorch_baseline.py --data-dir ../shared/datasets [--threads N] [--json]

It prints the wall time of the scoring loop (quantize + evaluate every variant;
data loading and model set-up excluded) and variants/s. Compare with the
"scored N variants in T s" line of
    cargo run -- --model mlp-complex --dataset churn --data-dir ../shared/datasets
The weights are randomly initialised: the time does not depend on them.
"""
import argparse
import csv
import gzip
import io
import json
import os
import random
import time

import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402


def load_churn_test(data_dir, seed=1):
    path = os.path.join(data_dir, "churn", "Churn_Modelling.csv")
    raw = open(path + ".gz", "rb").read() if os.path.exists(path + ".gz") else open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    numeric = ["CreditScore", "Age", "Tenure", "Balance", "NumOfProducts", "HasCrCard", "IsActiveMember", "EstimatedSalary"]
    x = []
    for r in rows:
        f = [float(r[c]) for c in numeric]
        f += [1.0 if r["Geography"] == g else 0.0 for g in ("France", "Germany", "Spain")]
        f += [1.0 if r["Gender"] == g else 0.0 for g in ("Female", "Male")]
        x.append(f)
    y = [int(r["Exited"]) for r in rows]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_train = len(rows) * 3 // 5
    test = order[n_train + len(rows) // 5:]
    train = order[:n_train]
    xt = torch.tensor(x)
    mean, std = xt[train].mean(0), xt[train].std(0, unbiased=False).clamp_min(1e-12)
    return ((xt[test] - mean) / std).float(), torch.tensor([y[i] for i in test])


# ---- the seven methods, vectorised over a whole tensor -----------------------

def levels(w, bits, kind):
    lo, hi = w.min(), w.max()
    k = 2 ** bits
    if kind == "uniform":
        return torch.linspace(lo.item(), hi.item(), k)
    if kind == "histogram":
        return lo + (torch.arange(k, dtype=torch.float32) + 0.5) * (hi - lo) / k
    # normal prior: lo, hi and the K-2 quantiles of N(mean, std)
    if k == 2:
        return torch.stack([lo, hi])
    p = torch.arange(1, k - 1, dtype=torch.float32) / (k - 1)
    q = w.mean() + w.std(unbiased=False) * torch.special.ndtri(p)
    return torch.sort(torch.cat([lo.view(1), q, hi.view(1)])).values


def nearest(w, lv):
    j = torch.bucketize(w, lv, right=True).clamp(1, len(lv) - 1) - 1
    lo_, hi_ = lv[j], lv[j + 1]
    return torch.where(w - lo_ >= hi_ - w, hi_, lo_)


def stochastic(w, lv, gen):
    j = torch.bucketize(w, lv, right=True).clamp(1, len(lv) - 1) - 1
    lo_, hi_ = lv[j], lv[j + 1]
    p = ((w - lo_) / (hi_ - lo_).clamp_min(1e-30)).clamp(0, 1)
    return torch.where(torch.rand(w.shape, generator=gen) < p, hi_, lo_)


def midrise(w, bits):
    lo, hi = w.min(), w.max()
    k = 2 ** bits
    delta = ((hi - lo) / k).clamp_min(1e-30)
    k0 = torch.floor(lo / delta)
    code = (torch.floor(w / delta) - k0).clamp(0, k - 1)
    return delta * (k0 + code + 0.5)


METHODS = ["uniform-nearest", "uniform-stochastic", "histogram-nearest", "histogram-stochastic",
           "normal-nearest", "normal-stochastic", "midrise"]


def quantize(w, method, bits, gen):
    if method == "midrise":
        return midrise(w, bits)
    kind, rounding = method.split("-")
    lv = levels(w, bits, kind)
    return nearest(w, lv) if rounding == "nearest" else stochastic(w, lv, gen)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("SWEEP_DATA_DIR", "datasets"))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    x, y = load_churn_test(a.data_dir)
    widths = [13, 20, 40, 60, 30, 2]
    model = torch.nn.Sequential(*[m for i in range(5) for m in
                                  ([torch.nn.Linear(widths[i], widths[i + 1])] + ([torch.nn.ReLU()] if i < 4 else []))]).eval()
    weights = [m.weight.detach().clone() for m in model if isinstance(m, torch.nn.Linear)]
    grid = [(m, b, s) for m in METHODS for b in range(1, 17) for s in (range(1, a.seeds + 1) if "stochastic" in m else [None])]
    results = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        for method, bits, seed in grid:
            gen = torch.Generator().manual_seed(seed or 0)
            linears = [m for m in model if isinstance(m, torch.nn.Linear)]
            for lin, w in zip(linears, weights):
                lin.weight.copy_(quantize(w, method, bits, gen))
            acc = (model(x).argmax(1) == y).float().mean().item()
            results.append(acc)
        seconds = time.perf_counter() - t0
    out = {"variants": len(grid), "seconds": seconds, "variants_per_second": len(grid) / seconds,
           "threads": torch.get_num_threads(), "torch": torch.__version__}
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"PyTorch {torch.__version__}, {out['threads']} threads: {len(grid)} variants in {seconds:.2f} s "
              f"({out['variants_per_second']:.0f} variants/s)")


if __name__ == "__main__":
    main()
