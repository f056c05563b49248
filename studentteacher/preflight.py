"""Refuse before any work a run whose largest tensors cannot fit the memory of its device.

:func:`check_training`, :func:`check_flow` and :func:`check_dmmd` estimate, for a validated config,
the tensors a run must hold at the same time, times its ``replicas`` (but DMMD's, which run one after
the other), and compare them with the memory available
now (:func:`available_bytes`: ``torch.cuda.mem_get_info`` on a GPU, ``MemAvailable`` of
``/proc/meminfo`` on the CPU). The estimates are lower bounds, so a refusal is certain and a run
that passes may still be large:

* student-teacher: the particles and their next step (2 x N H (d + O), dense readout N H d + N O N H),
  the teacher's weights, drawn in float64 (M H (d + O), dense readout M H d + M O M H), the
  teacher-labelled datasets ((n_train + n_valid) (d + O)), and the activations of the teacher
  labelling the larger set and of an evaluation over it (n M (H + 2 O), n N (H + 2 O): hidden
  units, pre-outputs, features);
* flows: particles, source and noise (3 N d), the target (M d), the reference MMD^2's three
  Gram matrices at each log step (N^2 + M^2 + N M), M^2 for the flows that solve with the target's
  Gram (drmmd, drmmd_adaptive, kale), for srmmd and hrmmd the kernel's derivatives from the particles to
  every centre (N (N + M) (d + 4)) and, with the dense solve, the system of C = d (srmmd) or 1 + d
  (hrmmd) unknowns per particle with its jet Gram and factor (3 (N C)^2), and on the host the
  exact-OT cost matrix (N M float64, d > 1) and the snapshots kept for the pictures (S N d);
* DMMD: the particles, their step and start (3 N d), the data ((n_train + n_eval) d), the
  discriminator's weights with their gradients and Adam's moments (4 ((d + E) H + (layers - 1) H^2
  + H F)), its activations in training (4 batch_size (d + E + 2 H layers + F)) and at the particles
  (N (d + E + 2 H layers + F)), the sampler's Grams (pairwise and interacting rbf: N^2 + N n_train;
  self_potential rbf: N n_train), for the approximate sampler its reference run's activations and
  recording (N_ref (d + E + 2 H layers + F), levels steps_per_level F), for the 2-D targets the
  reference MMD^2's Grams (N^2 + n_eval^2 + N n_eval) and the exact-OT cost matrix (N n_eval
  float64, host), and the snapshots of every level (host);
* all: ~200 bytes of host memory per logged step (the history the run keeps).

A refusal is a :class:`~studentteacher.keys.ConfigError` naming the key whose value makes the
largest tensor large (of a product of several keys, the key of its largest factor; ``replicas``
when one replica would fit), the estimate and what is available.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import digits
from .keys import ConfigError, resolve_device
from .flows.registry import FLOWS
from .toys import TOY_OPTIONS

LOG_STEP_BYTES = 200
ITEM_BYTES = {"float32": 4, "float64": 8}


@dataclass(frozen=True)
class Tensor:
    """One tensor of an estimate: what it is, its size in bytes, the config key that makes it large
    (or, for a product of several keys, each key's factor: the largest is :attr:`blamed`), and whether
    it lives on the host (CPU memory) rather than on the run's device."""

    what: str
    bytes: int
    key: str | dict[str, int]
    host: bool = False

    @property
    def blamed(self) -> str:
        """The config key a refusal names: ``key``, or the key of the largest factor."""
        return self.key if isinstance(self.key, str) else max(self.key, key=self.key.get)


def _larger(config: dict, *keys: str) -> dict[str, int]:
    """The factor of a sum of config values (e.g. d + O) by the key of its largest term."""
    key = max(keys, key=lambda k: config[k])
    return {key: sum(config[k] for k in keys)}


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
        key = "replicas" if replicas > 1 and need // replicas <= available else largest.blamed
        raise ConfigError(
            f"config key {key!r}: got {config[key]!r}; allowed: a value whose tensors fit the {where.type} memory: "
            f"the run needs at least {_human(need)} ({replicas} x {largest.what}: {_human(largest.bytes)}, ...) "
            f"but {_human(available)} is available"
        )


def training_tensors(config: dict) -> list[Tensor]:
    """The student-teacher run's largest tensors (module docstring), one replica."""
    item = ITEM_BYTES[config["dtype"]]
    n, m, h, d, o = config["n_particles"], config["n_teacher"], config["hidden"], config["d_in"], config["d_out"]
    dense = config["readout"] == "dense"
    data = _larger(config, "n_train", "n_valid")
    n_eval = max(config["n_train"], config["n_valid"])
    width = _larger(config, "d_in", "d_out")
    units = _larger(config, "hidden", "d_out")
    return [
        Tensor("particles and their step [2, N, H, d + O]", 2 * item * n * (h * d + o * (n * h if dense else h)),
               {"n_particles": n, "hidden": h, **width}),
        Tensor("teacher weights, drawn in float64 [M, H, d + O]", 8 * m * (h * d + o * (m * h if dense else h)),
               {"n_teacher": m, "hidden": h, **width}),
        Tensor("datasets [n_train + n_valid, d + O]", item * (config["n_train"] + config["n_valid"]) * (d + o),
               {**data, **width}),
        Tensor("teacher activations [n, M, H + 2 O]", item * n_eval * m * (h + 2 * o),
               {**data, "n_teacher": m, **units}),
        Tensor("evaluation activations [n, N, H + 2 O]", item * n_eval * n * (h + 2 * o),
               {**data, "n_particles": n, **units}),
        Tensor("logged history", LOG_STEP_BYTES * (config["epochs"] // config["log_every"] + 2), "log_every",
               host=True),
    ]  # fmt: skip


def flow_tensors(config: dict) -> list[Tensor]:
    """The flow's largest tensors (module docstring), one replica."""
    item = ITEM_BYTES[config["dtype"]]
    n, m = config["n_particles"], config["n_target"]
    d = {"gaussian_1d": 1, "gaussian_nd": config.get("dim", TOY_OPTIONS["dim"])}.get(config["target"], 2)
    bigger = "n_particles" if n >= m else "n_target"
    dims = {"dim": d} if config["target"] == "gaussian_nd" else {}  # the key that sets d, where one does
    snapshots = config["steps"] // config["snapshot_every"] + 2
    tensors = [
        Tensor("particles, source and noise [3, N, d]", 3 * item * n * d, {"n_particles": n, **dims}),
        Tensor("target [M, d]", item * m * d, {"n_target": m, **dims}),
        Tensor("reference MMD^2 Grams N^2 + M^2 + N M", item * (n * n + m * m + n * m), bigger),
        Tensor("snapshots [S, N, d]", item * n * d * snapshots, {"snapshot_every": snapshots, "n_particles": n, **dims},
               host=True),
        Tensor("logged history", LOG_STEP_BYTES * (config["steps"] // config["log_every"] + 2), "log_every",
               host=True),
    ]  # fmt: skip
    flow = FLOWS[config["flow"]]
    if flow.holds_target_gram:
        tensors.append(Tensor("the target's Gram and its factor [2, M, M]", 2 * item * m * m, "n_target"))
    if flow.unknowns_per_particle(d):
        tensors.append(Tensor("kernel derivatives [N, N + M, d + 4]", item * n * (n + m) * (d + 4),
                              {bigger: max(n, m), **dims}))
        if config.get("linear_solver", "dense") == "dense":
            size = n * flow.unknowns_per_particle(d)
            tensors.append(Tensor("the Sobolev system, its jet Gram and factor [3, N C, N C]", 3 * item * size * size,
                                  {"n_particles": n, **dims}))  # fmt: skip
    if d > 1:
        tensors.append(Tensor("exact OT cost matrix [N, M] (float64)", 8 * n * m, bigger, host=True))
    return tensors


def dmmd_tensors(config: dict) -> list[Tensor]:
    """The DMMD run's largest tensors (module docstring)."""
    item, n, batch = ITEM_BYTES[config["dtype"]], config["n_particles"], config["batch_size"]
    d, m, held = 2, config["n_train"], config["n_eval"]
    if config["target"] == "digits":  # the fixed split of studentteacher.digits
        d, m, held = digits.SIDE**2, digits.SIZE - digits.HELD_OUT, digits.HELD_OUT
    hidden, features, embedding = config["hidden"], config["features"], config["embedding"]
    width = d + embedding + 2 * hidden * config["layers"] + features  # activations of one point
    sizes = _larger(config, "hidden", "features", "embedding")  # the widest of the network's sizes
    parameters = (d + embedding) * hidden + (config["layers"] - 1) * hidden * hidden + hidden * features
    pairwise, rbf = config["sampler"] == "pairwise", config["kernel"] == "rbf"
    grams = n * n * (pairwise or (rbf and config["sampler"] == "interacting")) + n * m * (pairwise or rbf)
    tensors = [
        Tensor("particles, their step and start [3, N, d]", 3 * item * n * d, "n_particles"),
        Tensor("data [n_train + n_eval, d]", item * (m + held) * d, "n_train" if m >= held else "n_eval"),
        Tensor("the discriminator's weights, gradients and Adam moments [4, (d + E) H + (layers - 1) H^2 + H F]",
               4 * item * parameters, sizes),
        Tensor("training activations at clean, noised and penalty points, kept for the double backward "
               "[4, batch_size, d + E + 2 H layers + F]", 4 * item * batch * width, {"batch_size": batch, **sizes}),
        Tensor("activations at the particles [N, d + E + 2 H layers + F]", item * n * width,
               {"n_particles": n, **sizes}),
        Tensor("the sampler's Grams", item * grams, "n_particles"),
        Tensor("snapshots [levels + 1, N, d]", item * n * d * (config["levels"] + 1), "n_particles", host=True),
        Tensor("logged history", LOG_STEP_BYTES * (config["train_steps"] // config["log_every"] + config["levels"] + 2),
               "log_every", host=True),
    ]  # fmt: skip
    if config["sampler"] == "approximate":  # an interacting run of the reference particles, recorded step by step
        reference, steps = config["reference_particles"], config["levels"] * config["steps_per_level"]
        tensors += [
            Tensor("activations at the reference particles [N_ref, d + E + 2 H layers + F]", item * reference * width,
                   {"reference_particles": reference, **sizes}),
            Tensor("the recorded particles' side [levels steps_per_level, F] (rbf: [.., N_ref, F])",
                   item * steps * features * (reference if rbf else 1),
                   {"reference_particles" if rbf else "levels": reference if rbf else steps, "features": features}),
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
