"""The one config dataclass for a training run, its validation and its checkpoint schedule.

Every setting that changes what a run computes lives here and is written to the run's
``config.json``; nothing else (not the CLI, not the trainer) holds defaults of its own.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

ACTIVATIONS = ("relu", "gelu")
LOSS_DTYPES = ("float64", "float32")
# the classification losses (models.losses): softmax cross-entropy and StableMax cross-entropy (Prieto et al. 2025)
CLASSIFIER_LOSSES = ("cross_entropy", "stablemax")
# families trained with a fixed loss of their own; every other family is a classifier taking CLASSIFIER_LOSSES
FIXED_LOSSES = {"quadratic": "mse"}
LOSSES = (*CLASSIFIER_LOSSES, "mse")
# adamw: torch's AdamW; orthoadamw: the same AdamW stepping on the gradient with its component along each
# weight tensor removed (Prieto et al.'s ⊥Grad, interp_grok.optim)
OPTIMIZERS = ("adamw", "orthoadamw")
INIT_SCHEMES = ("normal_fan_in", "torch_default")  # see models.mlp.init_params
INIT_SCHEME = INIT_SCHEMES[0]  # the default: every W ~ N(0, 1/fan_in), W_E ~ N(0, 1/d_model), b_in = 0
# additive: X = Binomial(noise_n, p_bin) - floor(noise_n / 2) added to a fraction noise_frac of all pairs;
# uniform: a fraction noise_frac of the training labels replaced by a uniform draw (Doshi et al. 2024)
NOISE_KINDS = ("additive", "uniform")
# model families (interp_grok.models.FAMILIES holds one class per name; a test checks they agree)
MODELS = ("mlp", "quadratic", "transformer")
# how the pairs are split: randperm (torch.randperm from data_seed, the default) or python_shuffle
# (Nanda et al.'s gen_train_test: random.seed(data_seed); random.shuffle of the a-major pair list)
SPLITS = ("randperm", "python_shuffle")


def model_losses(model: str) -> tuple[str, ...]:
    """The training losses a model family accepts, its default first."""
    return (FIXED_LOSSES[model],) if model in FIXED_LOSSES else CLASSIFIER_LOSSES


class ConfigError(ValueError):
    """A setting is out of its allowed range; the message names the setting and the range."""


@dataclass
class Config:
    # task
    p: int = 97
    noise_n: int = 4  # label noise X = Binomial(noise_n, p_bin) - floor(noise_n / 2)
    p_bin: float = 0.5
    noise_frac: float = 1.0  # xi: fraction of pairs whose label gets the noise (the others keep X = 0)
    noise_kind: str = "additive"  # one of NOISE_KINDS; "uniform" ignores noise_n and p_bin
    train_frac: float = 0.3
    data_seed: int = 346  # the seed notebook's DATA_SEED, which it never used
    split: str = "randperm"  # one of SPLITS
    # model
    model: str = "mlp"  # one of MODELS; "quadratic" uses d_mlp (its width N) and ignores d_model and act
    d_model: int = 128
    d_mlp: int = 0  # 0 means the seed's 2 * d_model * n_ctx = 4 * d_model
    act: str = "relu"
    init: str = INIT_SCHEME
    init_scale: float = 1.0  # alpha: every initial weight multiplied by it (Liu et al., "Omnigrok")
    # transformer only (models.transformer): attention heads (d_head = d_model // n_heads), whether the
    # unembedding has a column for the "=" token (p + 1 logits, Nanda et al.) and whether the MLP's
    # biases b_in, b_out are trained (True, Nanda et al.) or frozen at zero (TransformerLens's demo)
    n_heads: int = 4
    eq_logit: bool = True
    biases: bool = True
    seed: int = 0  # model initialization
    # optimizer
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-8
    warmup_steps: int = 0  # linear lr warm-up: lr * min(epoch / warmup_steps, 1), lr 0 at epoch 0 (0: none)
    epochs: int = 20_000
    loss_dtype: str = "float64"
    loss: str | None = None  # one of model_losses(model); None: that tuple's first (filled in at construction)
    optimizer: str = "adamw"  # one of OPTIMIZERS
    # logging
    n_checkpoints: int = 100
    max_checkpoint_gap: float = 0.025  # no gap between checkpoints above this fraction of the run
    eval_every: int = 50
    checkpoint_epochs: list[int] = field(default_factory=list)  # derived, see finalize()

    def __post_init__(self) -> None:
        self._default_loss()

    def _default_loss(self) -> None:
        # None: the model's own loss (also what a config.json from before the loss setting means)
        if self.loss is None and isinstance(self.model, str):
            self.loss = model_losses(self.model)[0]

    def finalize(self) -> Config:
        """Validate, fill derived fields, and return self (idempotent)."""
        if self.d_mlp == 0:
            self.d_mlp = 4 * self.d_model
        self.betas = tuple(float(b) for b in self.betas)  # JSON gives lists back
        self._default_loss()
        validate(self)
        if not self.checkpoint_epochs:
            self.checkpoint_epochs = checkpoint_schedule(
                self.epochs, self.n_checkpoints, self.max_checkpoint_gap
            )
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        betas, ce = d.get("betas", (0.9, 0.98)), d.get("checkpoint_epochs", [])
        if not isinstance(betas, (list, tuple)) or not all(_is_real(b) for b in betas):
            raise ConfigError(f"betas must be two numbers in [0, 1) (got {betas!r})")
        if not isinstance(ce, list) or not all(_is_int(e) for e in ce):
            raise ConfigError("checkpoint_epochs must be a list of integers")
        return cls(**d).finalize()


MAX_EPOCHS = 10**9  # metrics.jsonl grows ~20 bytes an epoch: 10^9 epochs is already ~20 GB
MAX_CHECKPOINTS = 1000  # the schedule's search is quadratic in it


def _check(ok: bool, name: str, allowed: str, value) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {allowed} (got {value!r})")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate(c: Config) -> None:
    """Raise ConfigError naming the first setting outside its allowed range."""
    for name in ("p_bin", "noise_frac", "train_frac", "lr", "weight_decay", "adam_eps", "max_checkpoint_gap",
                 "init_scale"):
        v = getattr(c, name)
        _check(_is_real(v), name, "a finite number", v)
    for name in ("p", "noise_n", "d_model", "d_mlp", "epochs", "n_checkpoints", "eval_every", "seed", "data_seed",
                 "n_heads", "warmup_steps"):
        v = getattr(c, name)
        _check(_is_int(v), "checkpoints" if name == "n_checkpoints" else name, "an integer", v)
    _check(isinstance(c.act, str) and isinstance(c.init, str) and isinstance(c.loss_dtype, str),
           "act, init and loss_dtype", "strings", (c.act, c.init, c.loss_dtype))
    _check(c.model in MODELS, "model", f"one of {', '.join(MODELS)}", c.model)
    _check(c.split in SPLITS, "split", f"one of {', '.join(SPLITS)}", c.split)
    for name in ("eq_logit", "biases"):
        _check(isinstance(getattr(c, name), bool), name, "true or false", getattr(c, name))
    _check(c.n_heads >= 1, "n_heads", "an integer >= 1", c.n_heads)
    # a per-setting range, not a family branch: the heads split d_model (Nanda et al.'s d_head = d_model // n_heads)
    _check(c.model != "transformer" or c.d_model % c.n_heads == 0, "n_heads", f"a divisor of d_model = {c.d_model}",
           c.n_heads)
    _check(c.warmup_steps >= 0, "warmup_steps", "an integer >= 0", c.warmup_steps)
    _check(c.noise_kind in NOISE_KINDS, "noise_kind", f"one of {', '.join(NOISE_KINDS)}", c.noise_kind)
    _check(c.p >= 2, "p", "an integer >= 2", c.p)
    _check(c.noise_n >= 0, "noise_n", "an integer >= 0", c.noise_n)
    _check(0.0 <= c.p_bin <= 1.0, "p_bin", "in [0, 1]", c.p_bin)
    _check(0.0 <= c.noise_frac <= 1.0, "noise_frac", "in [0, 1]", c.noise_frac)
    _check(c.init_scale > 0, "init_scale", "> 0", c.init_scale)
    _check(0.0 < c.train_frac < 1.0, "train_frac", "in (0, 1)", c.train_frac)
    n_train = math.floor(c.train_frac * c.p**2)
    _check(
        1 <= n_train < c.p**2, "train_frac", f"such that 1 <= floor(train_frac * p^2) < {c.p**2}",
        c.train_frac,
    )
    _check(isinstance(c.d_model, int) and c.d_model >= 1, "d_model", "an integer >= 1", c.d_model)
    _check(isinstance(c.d_mlp, int) and c.d_mlp >= 1, "d_mlp", "an integer >= 1", c.d_mlp)
    _check(c.act in ACTIVATIONS, "act", f"one of {', '.join(ACTIVATIONS)}", c.act)
    _check(c.init in INIT_SCHEMES, "init", f"one of {', '.join(INIT_SCHEMES)}", c.init)
    _check(c.lr > 0, "lr", "> 0", c.lr)
    _check(c.weight_decay >= 0, "weight_decay", ">= 0", c.weight_decay)
    _check(
        len(c.betas) == 2 and all(0.0 <= b < 1.0 for b in c.betas), "betas", "two numbers in [0, 1)",
        c.betas,
    )
    _check(c.adam_eps > 0, "adam_eps", "> 0", c.adam_eps)
    _check(1 <= c.epochs <= MAX_EPOCHS, "epochs", f"an integer in [1, {MAX_EPOCHS:.0e}]", c.epochs)
    _check(c.loss_dtype in LOSS_DTYPES, "loss_dtype", f"one of {', '.join(LOSS_DTYPES)}", c.loss_dtype)
    _check(isinstance(c.loss, str) and c.loss in LOSSES, "loss", f"one of {', '.join(LOSSES)}", c.loss)
    if c.loss not in model_losses(c.model):
        allowed = model_losses(c.model)
        raise ConfigError(f"loss {c.loss} does not apply to model {c.model}, which trains with "
                          + (f"{allowed[0]} only" if len(allowed) == 1 else f"one of {', '.join(allowed)}"))
    _check(isinstance(c.optimizer, str) and c.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}",
           c.optimizer)
    _check(
        2 <= c.n_checkpoints <= MAX_CHECKPOINTS, "checkpoints", f"an integer in [2, {MAX_CHECKPOINTS}]",
        c.n_checkpoints,
    )
    _check(0.0 < c.max_checkpoint_gap <= 1.0, "max_checkpoint_gap", "in (0, 1]", c.max_checkpoint_gap)
    _check(
        isinstance(c.eval_every, int) and c.eval_every >= 1, "eval_every", "an integer >= 1",
        c.eval_every,
    )
    for name in ("seed", "data_seed"):
        v = getattr(c, name)
        _check(isinstance(v, int) and 0 <= v < 2**63, name, "an integer in [0, 2^63)", v)
    if c.checkpoint_epochs:
        ce = c.checkpoint_epochs
        _check(
            ce == sorted(set(ce)) and ce[0] == 0 and ce[-1] == c.epochs,
            "checkpoint_epochs", "sorted unique epochs from 0 to epochs", ce[:3] + ["..."],
        )


def checkpoint_schedule(epochs: int, count: int = 100, max_gap: float = 0.025) -> list[int]:
    """Log-spaced checkpoint epochs in [0, epochs], both ends included, with a linear floor.

    Pure log spacing leaves the late run (where grokking happens) sparse, so the schedule is
    the union of a geometric grid and a linear grid whose step is floor(max_gap * epochs); the
    geometric part gets as many points as fit in ``count`` (at least count/2). When the linear
    floor is denser than ``count`` allows, the total exceeds ``count``: the gap is the contract.
    """
    if epochs <= count - 1:
        return list(range(epochs + 1))
    step = max(1, math.floor(max_gap * epochs))
    linear = set(range(0, epochs + 1, step)) | {epochs}

    def merged(m: int) -> list[int]:
        return sorted(linear | {int(round(x)) for x in _geomspace(1.0, float(epochs), m)} | {0})

    m = max(2, count // 2)  # never fewer than count/2 log points, even when the floor is dense
    while m < count and len(merged(m + 1)) <= count:  # (not monotone in m: no bisection)
        m += 1
    return merged(m)


def _geomspace(lo: float, hi: float, n: int) -> list[float]:
    r = math.log(hi / lo) / (n - 1)
    return [lo * math.exp(r * i) for i in range(n)]
