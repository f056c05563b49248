"""Refuse before any work a run whose largest tensors cannot fit the memory of its device.

:func:`check_training`, :func:`check_flow` and :func:`check_dmmd` estimate, for a validated config,
the tensors a run must hold at the same time, times its ``replicas`` (but DMMD's, which run one after
the other), and compare them with the memory available
now (:func:`available_bytes`: ``torch.cuda.mem_get_info`` on a GPU, ``MemAvailable`` of
``/proc/meminfo`` on the CPU). The estimates are lower bounds, so a refusal is certain and a run
that passes may still be large:

* student-teacher: the particles and their next step (2 x N H (d + O), dense readout N H d + N O N H),
  the teacher-labelled datasets ((n_train + n_valid) (d + O)) and the activations of an
  evaluation over the larger set (n N (H + 2 O): hidden units, pre-outputs, features);
* flows: particles, source and noise (3 N d), the target (M d), the reference MMD^2's three
  Gram matrices at each log step (N^2 + M^2 + N M), M^2 for the flows that solve with the target's
  Gram (drmmd, drmmd_adaptive, kale), for srmmd and hrmmd the kernel's derivatives from the particles to
  every centre (N (N + M) (d + 4)) and, with the dense solve, the system of C = d (srmmd) or 1 + d
  (hrmmd) unknowns per particle with its jet Gram and factor (3 (N C)^2), and on the host the
  exact-OT cost matrix (N M float64, d > 1) and the snapshots kept for the pictures (S N d);
* DMMD: the particles, their step and start (3 N d), the data ((n_train + n_eval) d), the
  discriminator's activations at the particles (N (2 H layers + F)), the sampler's Grams (pairwise
  and interacting rbf: N^2 + N n_train; approximate rbf: N n_train), for the 2-D targets the
  reference MMD^2's Grams (N^2 + n_eval^2 + N n_eval) and the exact-OT cost matrix (N n_eval
  float64, host), and the snapshots of every level (host);
* all: ~200 bytes of host memory per logged step (the history the run keeps).

A refusal is a :class:`~studentteacher.config.ConfigError` naming the key whose value makes the
largest tensor large (``replicas`` when one replica would fit), the estimate and what is available.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import digits
from .config import ConfigError, resolve_device
from .toys import TOY_OPTIONS

LOG_STEP_BYTES = 200
ITEM_BYTES = {"float32": 4, "float64": 8}
SOLVES_WITH_TARGET_GRAM = ("drmmd", "drmmd_adaptive", "kale")
SOLVES_WITH_PARTICLE_JETS = ("srmmd", "hrmmd")


@dataclass(frozen=True)
class Tensor:
    """One tensor of an estimate: what it is, its size in bytes, the config key that makes it large,
    and whether it lives on the host (CPU memory) rather than on the run's device."""

    what: str
    bytes: int
    key: str
    host: bool = False


def available_bytes(device: torch.device) -> int | None:
    """Free memory of ``device`` now (CUDA: free device memory; CPU: MemAvailable), None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:.3g} PB"


def _refuse_if_too_large(config: dict, tensors: list[Tensor], device: torch.device) -> None:
    """ConfigError naming a key when the tensors (times ``replicas``) exceed what is available."""
    replicas = config.get("replicas", 1)
    pools = [(device, tensors)]
    if device.type != "cpu":
        pools = [(device, [t for t in tensors if not t.host]), (torch.device("cpu"), [t for t in tensors if t.host])]
    for where, group in pools:
        need = replicas * sum(t.bytes for t in group)
        available = available_bytes(where)
        if not group or available is None or need <= available:
            continue
        largest = max(group, key=lambda t: t.bytes)
        key = "replicas" if replicas > 1 and need // replicas <= available else largest.key
        raise ConfigError(
            f"config key {key!r}: got {config[key]!r}; allowed: a value whose tensors fit the {where.type} memory: "
            f"the run needs at least {_human(need)} ({replicas} x {largest.what}: {_human(largest.bytes)}, ...) "
            f"but {_human(available)} is available"
        )


def training_tensors(config: dict) -> list[Tensor]:
    """The student-teacher run's largest tensors (module docstring), one replica."""
    item = ITEM_BYTES[config["dtype"]]
    n, h, d, o = config["n_particles"], config["hidden"], config["d_in"], config["d_out"]
    v_inputs = n * h if config["readout"] == "dense" else h
    data_key = "n_train" if config["n_train"] >= config["n_valid"] else "n_valid"
    n_eval = max(config["n_train"], config["n_valid"])
    return [
        Tensor("particles and their step [2, N, H, d + O]", 2 * item * n * (h * d + o * v_inputs), "n_particles"),
        Tensor("datasets [n_train + n_valid, d + O]", item * (config["n_train"] + config["n_valid"]) * (d + o),
               data_key),
        Tensor("evaluation activations [n, N, H + 2 O]", item * n_eval * n * (h + 2 * o),
               "n_particles" if n >= n_eval else data_key),
        Tensor("logged history", LOG_STEP_BYTES * (config["epochs"] // config["log_every"] + 2), "log_every",
               host=True),
    ]  # fmt: skip


def flow_tensors(config: dict) -> list[Tensor]:
    """The flow's largest tensors (module docstring), one replica."""
    item = ITEM_BYTES[config["dtype"]]
    n, m = config["n_particles"], config["n_target"]
    d = {"gaussian_1d": 1, "gaussian_nd": config.get("dim", TOY_OPTIONS["dim"])}.get(config["target"], 2)
    bigger = "n_particles" if n >= m else "n_target"
    tensors = [
        Tensor("particles, source and noise [3, N, d]", 3 * item * n * d, "n_particles"),
        Tensor("target [M, d]", item * m * d, "n_target"),
        Tensor("reference MMD^2 Grams N^2 + M^2 + N M", item * (n * n + m * m + n * m), bigger),
        Tensor("snapshots [S, N, d]", item * n * d * (config["steps"] // config["snapshot_every"] + 2),
               "snapshot_every", host=True),
        Tensor("logged history", LOG_STEP_BYTES * (config["steps"] // config["log_every"] + 2), "log_every",
               host=True),
    ]  # fmt: skip
    if config["flow"] in SOLVES_WITH_TARGET_GRAM:
        tensors.append(Tensor("the target's Gram and its factor [2, M, M]", 2 * item * m * m, "n_target"))
    if config["flow"] in SOLVES_WITH_PARTICLE_JETS:
        tensors.append(Tensor("kernel derivatives [N, N + M, d + 4]", item * n * (n + m) * (d + 4), bigger))
        if config.get("linear_solver", "dense") == "dense":
            size = n * (d if config["flow"] == "srmmd" else d + 1)
            tensors.append(Tensor("the Sobolev system, its jet Gram and factor [3, N C, N C]", 3 * item * size * size,
                                  "n_particles"))  # fmt: skip
    if d > 1:
        tensors.append(Tensor("exact OT cost matrix [N, M] (float64)", 8 * n * m, bigger, host=True))
    return tensors


def dmmd_tensors(config: dict) -> list[Tensor]:
    """The DMMD run's largest tensors (module docstring)."""
    item, n = ITEM_BYTES[config["dtype"]], config["n_particles"]
    d, m, held = 2, config["n_train"], config["n_eval"]
    if config["target"] == "digits":  # the fixed split of studentteacher.digits
        d, m, held = digits.SIDE**2, digits.SIZE - digits.HELD_OUT, digits.HELD_OUT
    pairwise, rbf = config["sampler"] == "pairwise", config["kernel"] == "rbf"
    grams = n * n * (pairwise or (rbf and config["sampler"] == "interacting")) + n * m * (pairwise or rbf)
    tensors = [
        Tensor("particles, their step and start [3, N, d]", 3 * item * n * d, "n_particles"),
        Tensor("data [n_train + n_eval, d]", item * (m + held) * d, "n_train" if m >= held else "n_eval"),
        Tensor("activations at the particles [N, 2 H layers + F]",
               item * n * (2 * config["hidden"] * config["layers"] + config["features"]), "n_particles"),
        Tensor("the sampler's Grams", item * grams, "n_particles"),
        Tensor("snapshots [levels + 1, N, d]", item * n * d * (config["levels"] + 1), "n_particles", host=True),
        Tensor("logged history", LOG_STEP_BYTES * (config["train_steps"] // config["log_every"] + config["levels"] + 2),
               "log_every", host=True),
    ]  # fmt: skip
    if config["target"] != "digits":
        bigger = "n_particles" if n >= held else "n_eval"
        tensors += [
            Tensor("reference MMD^2 Grams N^2 + n_eval^2 + N n_eval", item * (n * n + held * held + n * held), bigger),
            Tensor("exact OT cost matrix [N, n_eval] (float64)", 8 * n * held, bigger, host=True),
        ]
    return tensors


def check_training(config: dict) -> None:
    """Refuse (ConfigError naming the key) a validated student-teacher config that cannot fit its device."""
    _refuse_if_too_large(config, training_tensors(config), resolve_device(config["device"]))


def check_flow(config: dict) -> None:
    """Refuse (ConfigError naming the key) a validated flow config that cannot fit its device."""
    _refuse_if_too_large(config, flow_tensors(config), resolve_device(config["device"]))


def check_dmmd(config: dict) -> None:
    """Refuse (ConfigError naming the key) a validated DMMD config that cannot fit its device."""
    _refuse_if_too_large({**config, "replicas": 1}, dmmd_tensors(config), resolve_device(config["device"]))
