"""The summary and the picture of a ``reference_parity.py`` report (two validation curves, their ratio
and the weight gaps, logged at the same epochs)."""
from __future__ import annotations

from pathlib import Path

#: the |ratio - 1| bands of the summary
BANDS = (1e-6, 1e-3, 1e-2, 1e-1)


def summary(curves: dict) -> dict:
    """For each band b: the last logged epoch up to which |ratio - 1| <= b at every logged epoch
    (``null``: apart at epoch 0 already); the largest |ratio - 1|; the final values."""
    apart = [abs(ratio - 1) for ratio in curves["ratio"]]
    within = {}
    for band in BANDS:
        last = None
        for epoch, distance in zip(curves["epoch"], apart):
            if not distance <= band:
                break
            last = epoch
        within[f"{band:g}"] = last
    return {
        "within_until": within,
        "max_ratio_distance": max(apart),
        "final": {"epoch": curves["epoch"][-1], "package": curves["package"][-1],
                  "reference": curves["reference"][-1], "ratio": curves["ratio"][-1]},
    }  # fmt: skip



def plot(report: dict, path: Path) -> None:
    """Both validation curves (log y) and |ratio - 1| (log y) against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = report["curves"]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, height_ratios=(2, 1))
    top.plot(curves["epoch"], curves["package"], label="this package", lw=2)
    top.plot(curves["epoch"], curves["reference"], label=f"reference ({report['reference']})", lw=1, ls="--")
    top.set_yscale("log")
    top.set_ylabel("validation 1/2 MSE")
    top.legend()
    schedule = "" if report["reference_schedule"] in (None, "own") else ", the package's noise schedule in both"
    top.set_title(f"{report['config']['name']}, seed {report['config']['seed']}: the same initial state, "
                  f"batches and noise{schedule}", fontsize=10)  # fmt: skip
    distance = [max(abs(r - 1), 1e-12) for r in curves["ratio"]]
    bottom.plot(curves["epoch"], distance, color="k", lw=1, label="|reference / package - 1|")
    bottom.plot(curves["epoch"], [max(w, 1e-12) for w in curves["weight_difference"]], color="tab:red", lw=1,
                label="weights apart: largest / largest weight")  # fmt: skip
    bottom.plot(curves["epoch"], [max(w, 1e-12) for w in curves["weight_difference_rms"]], color="tab:orange", lw=1,
                label="weights apart: ||difference|| / ||weights||")  # fmt: skip
    bottom.set_yscale("log")
    bottom.set_xlabel("epoch")
    bottom.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
