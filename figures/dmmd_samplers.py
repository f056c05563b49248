"""DMMD (Galashov, De Bortoli, Gretton 2025), figure (e): the interacting sampler (particles interact
through their mean features, O(N) per step) against the approximate one (each particle alone along an
interacting run's recorded mean features) and the self-potential one (each particle alone along its
own features; runs from before the approximate sampler replayed name it "approximate"), for
several numbers of particles N: final sample quality (W1 and MMD^2 to the held-out sample; digits: the
Frechet distance) and the sampler's stepping time, mean +- 1 sd over seeds; and the metric over the
noise levels for the largest N.

    python figures/dmmd_samplers.py --runs reproduction/runs/dmmd_samplers --out figures/png/full

Runs: experiments/sweeps/figures/dmmd_samplers[_small].yaml (the same discriminator for every N and
sampler of a seed: training does not depend on them).
"""
from __future__ import annotations

import matplotlib.pyplot as plt

import common
from common import results

NAME = "dmmd_samplers"
COLORS = {"interacting": "tab:blue", "approximate": "tab:orange", "pairwise": "tab:green", "self_potential": "tab:red"}


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "dmmd")
    runs = results.runs(df)
    quality = "sample_fd" if "sample_fd" in set(df["metric"].dropna()) else "sample_w1"
    second = "sample_class_coverage" if quality == "sample_fd" else "sample_mmd2"
    samplers = [sampler for sampler in COLORS if sampler in set(runs["sampler"])]  # those with runs, in order
    particle_counts = sorted(set(runs["n_particles"]))
    common.theme()
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    for ax, metric in zip(axes[:3], [quality, second, "sample_seconds"]):
        table = results.final_table(df, ["sampler", "n_particles"], metric)
        for sampler in samplers:
            rows = table[table["sampler"] == sampler]
            ax.errorbar(rows["n_particles"], rows["mean"], yerr=rows["sd"].fillna(0.0), marker="o", capsize=3,
                        label=sampler, color=COLORS[sampler])  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(particle_counts, [str(count) for count in particle_counts])
        ax.minorticks_off()
        ax.set_yscale("log" if metric == "sample_seconds" else "linear")
        ax.set_xlabel("particles N")
        ax.set_ylabel(f"{metric} (final)")
        ax.legend(fontsize=8)
    largest = runs["n_particles"].max()
    rows = results.curves(df[df["n_particles"] == largest], quality)
    common.curve(axes[3], rows, hue="sampler", hue_order=samplers, palette=COLORS, logy=False)
    axes[3].set_xlabel("sampler step (a level every steps_per_level steps)")
    axes[3].set_ylabel(f"{quality} (N = {largest})")
    tables = [(results.final_table(df, ["sampler", "n_particles"], metric), f"{NAME}: final {metric}")
              for metric in (quality, second, "sample_seconds")]  # fmt: skip
    common.finish(
        fig, args.out, NAME,
        f"DMMD samplers on {common.values_text(df, 'target')}: {' vs '.join(samplers)}, "
        f"T = {common.values_text(df, 'levels')} levels x {common.values_text(df, 'steps_per_level')} steps of "
        f"{common.values_text(df, 'step_size')}\n{common.seeds_text(df)}",
        notes=[common.not_completed_note(df, "sampler")], tables=tables,
    )  # fmt: skip


if __name__ == "__main__":
    main()
