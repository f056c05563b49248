"""Figure 1 (Arbel et al. 2019, student-teacher): train and validation error vs epochs for the MMD
flow (sgd), noise injection, diffusion and KSD, mean +- 1 sd over seeds (each seed thin), log y.

    python figures/mmd_flow_student_teacher.py --runs reproduction/runs/mmd_flow_student_teacher \
        reproduction/runs/drmmd_student_teacher --out figures/png/full

Runs: experiments/sweeps/figures/mmd_flow_student_teacher[_small].yaml (diffusion, ksd) and the
sgd / noise-injection arms of drmmd_student_teacher[_small].yaml, the same configurations. Every
curve is read up to the shortest run's length (10^4 epochs at full scale, the paper's). The y-axes
are half the logged MMD^2 (the papers' "1/2 MSE"). Prints the validation 1/2 MSE at that length
and at the epochs in between that the paper discusses.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

import common
from common import results

NAME = "mmd_flow_student_teacher"
METHODS = ["sgd", "noise_injection", "diffusion", "ksd"]
EPOCHS = (500, 1000, 2000, 5000, 10000)


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "student_teacher")
    df = common.keep(df, df["method"].isin(METHODS), f"methods {', '.join(METHODS)}")
    horizon = int(results.runs(df)["epochs"].min())
    df = common.until(df, horizon).assign(rule=lambda d: d["method"].map(common.METHOD_LABELS))
    order = common.drawn_order(df, "rule", [common.METHOD_LABELS[m] for m in METHODS])
    common.theme()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    common.train_valid_panels(axes, df, "rule", order)
    common.finish(
        fig, args.out, NAME,
        f"Student-teacher, MMD flow variants, read to epoch {horizon}: {common.st_setting(df)}, "
        f"lr {common.values_text(df, 'lr')}\n{common.seeds_text(df, by='rule')} (thin: each seed)",
        notes=[common.not_completed_note(df, "method")],
        tables=common.half_mse_tables(NAME, df, ["method"], EPOCHS, horizon),
    )  # fmt: skip


if __name__ == "__main__":
    main()
