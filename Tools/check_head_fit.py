#!/usr/bin/env python3
"""Check zoo's logistic-regression head against scikit-learn on the same features.

    zoo finetune --weights W --data D --out M.safetensors --export-features DIR
    python3 Tools/check_head_fit.py DIR [--json]

DIR holds what `--export-features` writes: train_X.npy, train_y.npy, val_X.npy, val_y.npy
(raw features at the cut, one row per usable image or view) and head_fit.json (zoo's grid).
For every C of zoo's grid this fits sklearn.linear_model.LogisticRegression (lbfgs,
multinomial, tight tolerance) on the features standardised the way zoo does it (training
mean and population standard deviation, a scale of 1 for constant features), evaluates
zoo's objective (mean cross-entropy + ||W||^2 / (2 C n), intercept unpenalised) at
sklearn's solution, and picks C by the same rule (best validation accuracy, ties to the
lower validation loss).

Exit status 0 when zoo's chosen validation accuracy is within --max-accuracy-gap (one
point) of sklearn's and every objective agrees within --max-objective-gap (relative); 1
when they disagree; 2 when scikit-learn is not installed (pip install scikit-learn).
"""
import argparse
import json
import os
import sys

import numpy as np


def standardise(train, other):
    mean = train.mean(axis=0)
    sd = np.sqrt(((train - mean) ** 2).mean(axis=0))
    sd[sd < 1e-8] = 1.0
    return (train - mean) / sd, (other - mean) / sd


def cross_entropy(logits, y):
    top = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(lse - logits[np.arange(len(y)), y]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument("--max-accuracy-gap", type=float, default=0.01)
    parser.add_argument("--max-objective-gap", type=float, default=1e-4)
    args = parser.parse_args()
    try:
        import sklearn
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        print("scikit-learn is not installed (pip install scikit-learn)", file=sys.stderr)
        return 2

    def load(name):
        return np.load(os.path.join(args.directory, name)).astype(np.float64)

    xtr, xva = load("train_X.npy"), load("val_X.npy")
    ytr, yva = load("train_y.npy").astype(int), load("val_y.npy").astype(int)
    with open(os.path.join(args.directory, "head_fit.json")) as f:
        zoo = json.load(f)
    xtr, xva = standardise(xtr, xva)
    n = len(ytr)
    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    extra = {} if (major, minor) >= (1, 5) else {"multi_class": "multinomial"}

    rows = []
    for point in zoo["grid"]:
        c = point["C"]
        model = LogisticRegression(C=c, solver="lbfgs", max_iter=20000, tol=1e-10, **extra)
        model.fit(xtr, ytr)
        w, b = model.coef_, model.intercept_
        objective = cross_entropy(xtr @ w.T + b, ytr) + float((w ** 2).sum()) / (2 * c * n)
        val_logits = xva @ w.T + b
        rows.append({
            "C": c,
            "sklearn_objective": objective,
            "zoo_objective": point["objective"],
            "sklearn_iterations": int(np.max(model.n_iter_)),
            "zoo_iterations": point["iterations"],
            "sklearn_val_accuracy": float(np.mean(val_logits.argmax(axis=1) == yva)),
            "zoo_val_accuracy": point.get("val_accuracy"),
            "sklearn_val_loss": cross_entropy(val_logits, yva),
            "zoo_val_loss": point.get("val_loss"),
        })

    best = min(rows, key=lambda r: (-r["sklearn_val_accuracy"], r["sklearn_val_loss"]))
    zoo_best = next(r for r in rows if r["C"] == zoo["chosen_C"])
    accuracy_gap = abs(zoo_best["zoo_val_accuracy"] - best["sklearn_val_accuracy"])
    objective_gap = max(abs(r["zoo_objective"] - r["sklearn_objective"]) / max(1.0, abs(r["sklearn_objective"]))
                        for r in rows)
    ok = accuracy_gap <= args.max_accuracy_gap + 1e-12 and objective_gap <= args.max_objective_gap
    summary = {"sklearn_version": sklearn.__version__, "rows": n, "grid": rows,
               "sklearn_chosen_C": best["C"], "zoo_chosen_C": zoo["chosen_C"],
               "sklearn_val_accuracy": best["sklearn_val_accuracy"], "zoo_val_accuracy": zoo_best["zoo_val_accuracy"],
               "accuracy_gap": accuracy_gap, "max_relative_objective_gap": objective_gap, "ok": ok}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"scikit-learn {sklearn.__version__}, {n} training rows, {xtr.shape[1]} features")
        print(f"{'C':>8} {'objective zoo':>14} {'sklearn':>10} {'val zoo':>8} {'sklearn':>8} {'iter zoo':>9} {'sklearn':>8}")
        for r in rows:
            print(f"{r['C']:>8g} {r['zoo_objective']:>14.6f} {r['sklearn_objective']:>10.6f} "
                  f"{100 * r['zoo_val_accuracy']:>7.1f}% {100 * r['sklearn_val_accuracy']:>7.1f}% "
                  f"{r['zoo_iterations']:>9d} {r['sklearn_iterations']:>8d}")
        print(f"chosen C: zoo {zoo['chosen_C']:g} (val {100 * zoo_best['zoo_val_accuracy']:.1f}%), "
              f"sklearn {best['C']:g} (val {100 * best['sklearn_val_accuracy']:.1f}%); "
              f"largest relative objective gap {objective_gap:.1e}: {'agree' if ok else 'DISAGREE'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
