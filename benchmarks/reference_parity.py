"""The DrMMD paper's own student-teacher code and this package, side by side from one initial state.

    python benchmarks/reference_parity.py --reference DIR --config drmmd_paper_noise --seed 1 --epochs 6000
                                          [--log-every 50] [--threads 1] [--set KEY=VALUE ...] [--out PREFIX]

``DIR`` is a checkout of the DrMMD paper's repository (github.com/hudsonchen/DrMMD), which the
user provides: its ``student_teacher/`` folder (``networks.py``, ``losses.py``, ``trainer.py``) is
imported from there and nothing of it is part of this project. ``--reference package`` puts a
second copy of this package in the reference's seat: the plumbing check of the test suite, where
both curves must agree exactly.

The package's run (:class:`studentteacher.training.Trainer`) hands the reference its initial state:
the training and validation sets, the student's weights (W ``[N, H, d]`` -> ``linear1.weight
[N*H, d]``, V ``[N, 1, N*H]`` -> ``linear2.weight [N, N*H]``), the batch order of every epoch and the
noise draws (the reference's ``tr.randn`` routed to a copy of the package's ``noise`` generator).
The rest is the reference's own: modules, losses and their autograd, ``torch.optim.SGD``,
``train_epoch`` and its noise schedule (``--schedule package`` sets the package's beta_t instead).
``wandb``, imported and never called by ``trainer.py``, is an empty module when not installed.
Both codes flush denormals. Every ``--log-every`` epochs: both validation 1/2 MSEs (float64) and the
weight gaps (largest gap / largest weight; ||theta_ref - theta_pkg|| / ||theta_pkg||). Writes
``PREFIX.json`` (config, device, torch, date, the reference's commit, both curves, their ratio, the
weight gaps, seconds per epoch of each) and ``PREFIX.png``; default PREFIX
``benchmarks/results/reference_parity-<config>-seed<S>-<device>``. What "the same" means for each
config is measured in docs/benchmarks.md and REPRODUCTION.md.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import io
import json
import math
import platform
import subprocess
import sys
import time
import types
from pathlib import Path

import torch
import yaml

from studentteacher import config as config_module
from studentteacher.networks import output
from studentteacher.threads import flush_denormals
from studentteacher.training import Trainer, noise_at

from parity_report import plot, summary  # beside this script

CONFIG_DIR = Path(__file__).resolve().parent.parent / "experiments" / "configs"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REFERENCE_FILES = ("networks.py", "losses.py", "trainer.py")

#: --config -> (named config file, updates, the reference's --loss, its --with_noise)
CONFIGS = {
    "drmmd_paper": ("drmmd_paper", {}, "drmmd", False),
    "drmmd_paper_noise": ("drmmd_paper_noise", {}, "drmmd", True),
    "mmd_paper_noise": ("mmd_paper", {"method": "noise_injection"}, "mmd_noise_injection", True),
    "mmd_paper": ("mmd_paper", {"method": "sgd"}, "mmd_noise_injection", False),
}


def package_config(name: str, seed: int, updates: dict) -> dict:
    """The validated package config of ``--config name``: defaults, the named config, its updates, ``updates``."""
    named, config_updates, _, _ = CONFIGS[name]
    config = dict(config_module.DEFAULTS)
    config |= yaml.safe_load((CONFIG_DIR / f"{named}.yaml").read_text())
    config |= config_updates | updates | {"seed": seed, "threads": 1}
    return config_module.validate(config)


def half_mse(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """(1/2) mean |f_S(x) - f_T(x)|^2 over samples and outputs, in float64."""
    return 0.5 * float(((prediction.double() - target.double()) ** 2).mean())


def flat_weights(params: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The package's dense weights as the reference's layers hold them: ``[N*H, d]`` and ``[N*O, N*H]``."""
    weight_w, weight_v = params["W"], params["V"]
    n, h, d = weight_w.shape
    return weight_w.reshape(n * h, d), weight_v.reshape(n * weight_v.shape[1], n * h)


class PackageRun:
    """This package's run: one :class:`Trainer`, stepped an epoch at a time."""

    def __init__(self, config: dict):
        self.trainer = Trainer(config)

    def train_epoch(self, epoch: int) -> None:
        self.trainer.run_epoch()

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return flat_weights(self.trainer.params_of(0))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return output(self.trainer.arch, self.trainer.params_of(0), x)


class PackageAsReference(PackageRun):
    """A second package run in the reference's seat, loaded with the first one's state (the plumbing check)."""

    def __init__(self, config: dict, state: PackageRun):
        super().__init__(config | {"seed": config["seed"] + 1})  # another draw, so that only the loading can make them agree
        source, target = state.trainer, self.trainer
        target.params = {key: value.clone() for key, value in source.params.items()}
        target.train_x, target.train_y = source.train_x, source.train_y
        for name, generator in target.replicas[0].generators.items():
            generator.set_state(source.replicas[0].generators[name].get_state())


class SharedNoiseTorch(types.SimpleNamespace):
    """``torch`` for the reference's ``networks`` module, with ``randn(size, out=buffer)`` drawn from
    ``generator`` (the package's noise stream) while one is set; everything else is torch's."""

    def __init__(self, generator: torch.Generator):
        super().__init__(generator=generator)

    def __getattr__(self, name: str):
        return getattr(torch, name)

    def randn(self, *size, out=None, **options):
        if self.generator is None:
            return torch.randn(*size, out=out, **options)
        return torch.randn(*size, out=out, generator=self.generator, **options)


class BatchOrder(torch.utils.data.Sampler):
    """One permutation of range(n) per pass, drawn as the package draws its batch order."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator, device=self.generator.device).tolist())


def reference_folder(path: str) -> Path:
    """``path`` or ``path/student_teacher``, whichever holds the reference's files; SystemExit otherwise."""
    for folder in (Path(path), Path(path) / "student_teacher"):
        if all((folder / name).is_file() for name in REFERENCE_FILES):
            return folder.resolve()
    raise SystemExit(f"--reference {path}: no {', '.join(REFERENCE_FILES)} in it or in its student_teacher/ "
                     f"(a checkout of github.com/hudsonchen/DrMMD, or 'package')")  # fmt: skip


def import_reference(folder: Path) -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """The reference's ``networks``, ``losses`` and ``trainer`` modules (``wandb`` stubbed when absent),
    loaded from their files under the plain names by which ``trainer`` imports the other two."""
    if importlib.util.find_spec("wandb") is None:
        sys.modules["wandb"] = types.ModuleType("wandb")
    modules = []
    for name in ("networks", "losses", "trainer"):
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        modules.append(importlib.util.module_from_spec(spec))
        sys.modules[name] = modules[-1]
        spec.loader.exec_module(modules[-1])
    return tuple(modules)


class PapersCode:
    """The DrMMD paper's student-teacher code, loaded with the package run's initial state."""

    def __init__(self, folder: Path, config: dict, loss: str, with_noise: bool, state: PackageRun, schedule: str):
        networks, losses, trainer = import_reference(folder)
        self.trainer_module, self.config = trainer, config
        self.with_noise, self.schedule = with_noise, schedule
        source = state.trainer
        device, dtype = source.device, source.dtype
        noise_level = config["noise_level"] if with_noise else 0.0  # the reference's build_model does the same
        self.student = networks.NoisyOneHiddenLayer(
            config["d_in"], config["hidden"], config["d_out"], config["n_particles"],
            noise_level=noise_level, noise_decay=config["noise_decay"], bias=False,
        ).to(device=device, dtype=dtype)  # fmt: skip
        with torch.no_grad():
            weight_w, weight_v = state.weights()
            self.student.linear1.weight.copy_(weight_w)
            self.student.linear2.weight.copy_(weight_v)
        if loss == "drmmd":
            self.loss = losses.drmmd(self.student, with_noise, config["lmbda"])
        else:
            self.loss = losses.MMD(self.student, with_noise)
        self.optimizer = torch.optim.SGD(self.student.parameters(), lr=config["lr"])
        generators = source.replicas[0].generators
        batches = torch.Generator(device=generators["batches"].device)
        batches.set_state(generators["batches"].get_state())
        noise = torch.Generator(device=generators["noise"].device)
        noise.set_state(generators["noise"].get_state())
        networks.tr = SharedNoiseTorch(noise)
        train = torch.utils.data.TensorDataset(source.train_x, source.train_y)
        self.loader = torch.utils.data.DataLoader(train, batch_size=config["batch_size"],
                                                  sampler=BatchOrder(len(train), batches))  # fmt: skip
        self.iterations = 0

    def train_epoch(self, epoch: int) -> None:
        """The reference's ``train_epoch`` on the shared batches, then its noise schedule (``own``), or
        with the package's beta_t set on its layers before the epoch (``package``)."""
        if self.schedule == "package" and self.with_noise:
            self.student.linear1.noise_level = self.student.linear2.noise_level = noise_at(self.config, epoch)
        with contextlib.redirect_stdout(io.StringIO()):
            self.iterations, _, _ = self.trainer_module.train_epoch(
                epoch, self.iterations, self.loss, self.loader, self.optimizer, "train", device=str(self.student.linear1.weight.device)
            )  # fmt: skip
        if self.schedule == "own" and epoch % self.config["noise_decay_every"] == 0 and epoch > 0:
            self.student.update_noise_level()

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.student.linear1.weight.detach(), self.student.linear2.weight.detach()

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x).mean(-1)  # [n, d_out, N] -> [n, d_out]


def weight_differences(package: PackageRun, reference) -> tuple[float, float]:
    """(max |theta_ref - theta_pkg| / max |theta_pkg|, ||theta_ref - theta_pkg|| / ||theta_pkg||) over
    both layers: the largest single weight's gap (a relu that switches in one code and not in the
    other moves a few weights at once) and the typical one."""
    pairs = [(p.double(), r.double()) for p, r in zip(package.weights(), reference.weights())]
    largest = max(float(p.abs().max()) for p, _ in pairs)
    worst = max(float((r - p).abs().max()) for p, r in pairs) / largest
    norm = math.sqrt(sum(float((p * p).sum()) for p, _ in pairs))
    return worst, math.sqrt(sum(float(((r - p) ** 2).sum()) for p, r in pairs)) / norm


def compare(package: PackageRun, reference, epochs: int, log_every: int) -> dict:
    """Train both for ``epochs``; every ``log_every`` epochs (and at 0 and the end) their validation 1/2 MSE."""
    trainer = package.trainer
    x, y = trainer.valid_x, trainer.valid_y
    curves = {"epoch": [], "package": [], "reference": [], "weight_difference": [], "weight_difference_rms": []}
    seconds = {"package": 0.0, "reference": 0.0}

    def record(epoch: int) -> None:
        curves["epoch"].append(epoch)
        curves["package"].append(half_mse(package.predict(x), y))
        curves["reference"].append(half_mse(reference.predict(x), y))
        worst, typical = weight_differences(package, reference)
        curves["weight_difference"].append(worst)
        curves["weight_difference_rms"].append(typical)

    record(0)
    last_print = time.monotonic()
    for epoch in range(epochs):
        for name, run in (("package", package), ("reference", reference)):
            start = time.perf_counter()
            run.train_epoch(epoch)
            seconds[name] += time.perf_counter() - start
        done = epoch + 1
        if done % log_every == 0 or done == epochs:
            record(done)
            if time.monotonic() - last_print > 30 or done == epochs:
                last_print = time.monotonic()
                print(f"epoch {done}/{epochs}: package {curves['package'][-1]:.6g}, reference "
                      f"{curves['reference'][-1]:.6g}, weights apart {curves['weight_difference'][-1]:.2e} (largest), "
                      f"{curves['weight_difference_rms'][-1]:.2e} (rms)", flush=True)  # fmt: skip
    curves["ratio"] = [r / p if p > 0 else math.nan for p, r in zip(curves["package"], curves["reference"])]
    return {"curves": curves, "seconds_per_epoch": {name: s / max(epochs, 1) for name, s in seconds.items()}}


def reference_commit(folder: Path) -> str | None:
    """The checkout's commit, when ``folder`` is inside a git work tree."""
    result = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def parse_updates(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs, each value read as YAML (``n_particles=20`` -> 20)."""
    updates = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE, e.g. --set n_particles=20")
        updates[key] = yaml.safe_load(value)
    return updates


def arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="a checkout of github.com/hudsonchen/DrMMD, or 'package'")
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=6000)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both codes")
    parser.add_argument("--schedule", choices=("own", "package"), default="own",
                        help="the reference's noise schedule: its own (beta halves after epoch e, e %% every == 0, "
                             "e > 0: one epoch after the package) or the package's beta_t set on its layers")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a package config update")
    parser.add_argument("--out", default=None, help="write PREFIX.json and PREFIX.png")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.log_every < 1 or args.threads < 1:
        raise SystemExit("--epochs, --log-every and --threads must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = arguments(argv)
    try:
        config = package_config(args.config, args.seed, parse_updates(args.set))
    except ValueError as err:
        raise SystemExit(f"--set: {err}") from None
    if config["readout"] != "dense" or config["d_out"] != 1 or config["bias"] or config["adaptive_lmbda"]:
        raise SystemExit("the reference's student is dense, with d_out = 1, no bias and a fixed lambda: "
                         "--set readout, d_out, bias or adaptive_lmbda cannot change that")  # fmt: skip
    folder = None if args.reference == "package" else reference_folder(args.reference)
    torch.set_num_threads(args.threads)
    flushed = flush_denormals()  # for both codes, as every run of the package (no number of these rules changes)

    package = PackageRun(config)
    if folder is None:
        reference, reference_name = PackageAsReference(config, package), "this package"
    else:
        _, _, loss, with_noise = CONFIGS[args.config]
        reference, reference_name = PapersCode(folder, config, loss, with_noise, package, args.schedule), "the DrMMD paper's code"
    compared = compare(package, reference, args.epochs, args.log_every)
    device = package.trainer.device
    report = {
        "benchmark": "reference_parity",
        "reference": reference_name,
        "reference_commit": None if folder is None else reference_commit(folder),
        "reference_schedule": None if folder is None else args.schedule,
        "config": {"name": args.config, "seed": args.seed, "epochs": args.epochs, "updates": parse_updates(args.set),
                   "package_config": config},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": args.threads,
        "flush_denormals": flushed,
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        **compared,
        "summary": summary(compared["curves"]),
    }  # fmt: skip
    prefix = Path(args.out) if args.out else RESULTS_DIR / f"reference_parity-{args.config}-seed{args.seed}-{device.type}"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.json").write_text(json.dumps(report, indent=1))
    plot(report, Path(f"{prefix}.png"))
    print_summary(report, prefix)
    return report


def print_summary(report: dict, prefix: Path) -> None:
    """Where the two curves part, the seconds per epoch of each code, and what was written."""
    within = ", ".join(f"{band}: {epoch}" for band, epoch in report["summary"]["within_until"].items())
    seconds = report["seconds_per_epoch"]
    print(f"|reference / package - 1| within band up to epoch ({within}); largest {report['summary']['max_ratio_distance']:.3g}")
    print(f"seconds per epoch: package {seconds['package']:.4f}, reference {seconds['reference']:.4f} "
          f"(reference / package {seconds['reference'] / max(seconds['package'], 1e-12):.2f}x)")  # fmt: skip
    print(f"wrote {Path(f'{prefix}.json')} and {Path(f'{prefix}.png')}")


if __name__ == "__main__":
    main()
