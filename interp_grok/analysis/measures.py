"""The per-checkpoint measures: each progress.csv column group is one function, registered here.

A measure reads one checkpoint through a ``Checkpoint`` (its weights, its run, and the
intermediates several measures share, computed once and cached) and returns a dict of floats,
exactly the columns it declares. ``@measure(headline=..., extra=...)`` registers it:

    @measure(headline=("my_col",), extra=("my_other_col",))
    def my_measure(c: Checkpoint) -> dict[str, float]:
        return {"my_col": ..., "my_other_col": ...}

``headline`` columns are the ones summary.json reports as a run's final values; ``extra`` may be
a tuple or a callable ``run -> list[str]`` (columns that depend on the run, e.g. one per noise
value present, or a family-specific view). A measure whose columns are empty for a run is not
computed for it. progress.csv's columns are "epoch", every measure's headline columns in
registration order, then every measure's extra columns in registration order
(``columns(run)``): a new measure appended at the end of this module adds columns after the
existing ones, so existing files keep their bytes.

The measures call the pure functions of ``fourier``, ``circuits``, ``memorization``, ``neurons``
and ``evaluation``; nothing here reads or writes files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch

from .. import rundir
from ..config import Config
from ..data import Dataset
from ..evaluation import metrics_from_logits, sum_sq_weights, weight_norms
from ..models import ModelFamily, family
from ..models.transformer import attention_pattern, attention_scores, grid_pre
from ..noise import noise_pmf
from .audit import audit_curve, audit_scores, correct_diagonals, extraction_accuracy
from .circuits import centered_logit_power, logit_frequency_power, project_sum_frequencies
from .fourier import frequency_norms, gini, ipr
from .memorization import example_stats, fraction_by_noise, shift_distribution, shift_kl, shift_within
from .neurons import PERIODIC_IPR
from .numerics import (
    descent_weight_cosines,
    softmax_collapse_fraction,
    top_logit_gap,
    training_gradients,
    zero_loss_fraction,
)
from .transformer_views import (
    attention_shares,
    dominant_frequency,
    effective_rank,
    frequency_clusters,
    neuron_frequencies_and_keys,
)

Columns = tuple[str, ...] | Callable[[rundir.Run], list[str]]


@dataclass(frozen=True)
class Measure:
    name: str
    fn: Callable[[Checkpoint], dict[str, float]]
    headline: Columns = ()
    extra: Columns = ()

    def headline_columns(self, run: rundir.Run) -> list[str]:
        return list(self.headline(run) if callable(self.headline) else self.headline)

    def extra_columns(self, run: rundir.Run) -> list[str]:
        return list(self.extra(run) if callable(self.extra) else self.extra)

    def columns(self, run: rundir.Run) -> list[str]:
        return self.headline_columns(run) + self.extra_columns(run)


MEASURES: list[Measure] = []


def measure(*, headline: Columns = (), extra: Columns = ()) -> Callable:
    """Register ``fn`` as a measure producing ``headline`` and ``extra`` columns (module docstring)."""

    def register(fn: Callable[[Checkpoint], dict[str, float]]) -> Callable[[Checkpoint], dict[str, float]]:
        if any(m.name == fn.__name__ for m in MEASURES):
            raise ValueError(f"a measure named {fn.__name__!r} is already registered")
        MEASURES.append(Measure(fn.__name__, fn, headline, extra))
        return fn

    return register


def columns(run: rundir.Run) -> list[str]:
    """progress.csv's columns for this run, in file order."""
    head = [c for m in MEASURES for c in m.headline_columns(run)]
    extra = [c for m in MEASURES for c in m.extra_columns(run)]
    return ["epoch", *head, *extra]


def headline_columns() -> list[str]:
    """The run-independent headline columns, in file order (summary.json's ``final``)."""
    return [c for m in MEASURES if not callable(m.headline) for c in m.headline]


def measure_row(c: Checkpoint) -> dict[str, float]:
    """Every registered measure that has columns for ``c.run``, in registration order."""
    row: dict[str, float] = {}
    for m in MEASURES:
        want = m.columns(c.run)
        if not want:
            continue
        got = m.fn(c)
        if set(got) != set(want):
            raise ValueError(f"measure {m.name} returned {sorted(got)}, declared {sorted(want)}")
        row |= got
    return row


class Checkpoint:
    """One checkpoint's inputs, and the intermediates several measures share (each computed once).

    Shapes: p classes, pairs flattened a-major (index a * p + b), n_train training examples in
    ``dataset.train_idx`` order.
    """

    def __init__(self, params: dict[str, torch.Tensor], run: rundir.Run, key_freqs: torch.Tensor):
        self.params = params
        self.run = run
        self.key_freqs = key_freqs  # int64, 1-based

    @property
    def config(self) -> Config:
        return self.run.config

    @property
    def dataset(self) -> Dataset:
        return self.run.dataset

    @property
    def p(self) -> int:
        return self.run.config.p

    @cached_property
    def family(self) -> ModelFamily:
        return family(self.run.config)

    @cached_property
    def logits(self) -> torch.Tensor:
        """float32 [p, p, p] indexed a, b, class."""
        return self.family.grid_logits(self.params, self.config)

    @cached_property
    def flat(self) -> torch.Tensor:
        """The logits as [p * p, p]."""
        return self.logits.reshape(self.p * self.p, self.p)

    @cached_property
    def flat64(self) -> torch.Tensor:
        return self.flat.to(torch.float64)

    @cached_property
    def proj(self) -> torch.Tensor:
        """The key-frequency part of the logits (circuits.project_sum_frequencies), float64 [p * p, p]."""
        return project_sum_frequencies(self.logits, self.key_freqs).reshape(self.p * self.p, self.p)

    @cached_property
    def restricted(self) -> torch.Tensor:
        """Log-probabilities of the restricted logits (key part plus the mean over pairs), [p * p, p]."""
        return (self.proj + self.flat64.mean(0)).log_softmax(-1)

    @cached_property
    def excluded(self) -> torch.Tensor:
        """Log-probabilities of the excluded logits (key part removed) on the training rows, [n_train, p]."""
        return (self.flat64 - self.proj)[self.dataset.train_idx].log_softmax(-1)

    @cached_property
    def norms(self) -> torch.Tensor:
        """N_k of the family's embedding, float64 [floor(p/2)]."""
        return frequency_norms(self.family.embedding(self.params))

    @cached_property
    def power(self) -> torch.Tensor:
        """The logits' power per frequency (circuits.logit_frequency_power), float64 [floor(p/2)]."""
        return logit_frequency_power(self.logits)

    @cached_property
    def curves(self) -> dict[str, torch.Tensor]:
        return self.family.neuron_curves(self.params)

    @cached_property
    def neuron_ipr(self) -> torch.Tensor:
        """neurons.neuron_ipr from the cached curves, float64 [n_neurons]."""
        return (ipr(self.curves["in_a"]) + ipr(self.curves["in_b"])) / 2

    @cached_property
    def stats(self) -> dict[str, torch.Tensor]:
        """memorization.example_stats on the training examples (pred, margin, nll_noisy, nll_clean)."""
        ds, tr = self.dataset, self.dataset.train_idx
        return example_stats(self.flat[tr], ds.noisy_labels[tr], ds.clean_labels[tr])

    @cached_property
    def noisy_tr(self) -> torch.Tensor:
        """bool [n_train]: training examples whose label was changed."""
        return self.dataset.is_noisy[self.dataset.train_idx]

    @cached_property
    def restricted_nll(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pair NLL of the restricted logits against (noisy, clean) labels, float64 [p * p] each."""
        ds = self.dataset
        return _nll(self.restricted, ds.noisy_labels), _nll(self.restricted, ds.clean_labels)

    @cached_property
    def excluded_nll(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example NLL of the excluded logits against (noisy, clean) labels, float64 [n_train] each."""
        ds, tr = self.dataset, self.dataset.train_idx
        return _nll(self.excluded, ds.noisy_labels[tr]), _nll(self.excluded, ds.clean_labels[tr])


def _nll(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return -log_probs.gather(-1, labels[:, None])[:, 0]


def _nan_mean(x: torch.Tensor) -> float:
    return x.mean().item() if x.numel() else math.nan


def x_value_columns(noise: torch.Tensor, kind: str = "additive") -> list[int]:
    """The nonzero noise values present, whose memorized fraction gets its own column (none for
    uniform noise, whose shift is a uniform draw: one column per residue would say nothing)."""
    if kind == "uniform":
        return []
    return [x for x in sorted(noise.unique().tolist()) if x != 0]


def x_column(x: int) -> str:
    return f"train_noisy_memorized_frac_x{x:+d}"


def excluded_x_column(x: int) -> str:
    """Excluded loss (noisy labels) over the noisy-labelled training examples with this X."""
    return f"excluded_loss_train_noisy_x{x:+d}"


def _xs(run: rundir.Run) -> list[int]:
    return x_value_columns(run.dataset.noise, run.config.noise_kind)


# ------------------------------------------------------------------ the measures, in file order


@measure(headline=("train_loss", "test_loss", "test_acc_noisy", "test_acc_clean", "train_clean_acc",
                   "train_noisy_memorized_frac", "train_noisy_corrected_frac"),
         extra=("train_acc", "train_loss_clean", "test_loss_clean"))
def losses_and_accuracies(c: Checkpoint) -> dict[str, float]:
    """evaluation.metrics_from_logits on the full grid: the family's loss and the accuracies,
    against the noisy and the clean labels (measurements.md §5)."""
    ds = c.dataset
    return metrics_from_logits(c.flat, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx,
                               loss=c.family.loss)


@measure(headline=("restricted_loss", "restricted_loss_clean", "excluded_loss"), extra=("excluded_loss_clean",))
def restricted_excluded(c: Checkpoint) -> dict[str, float]:
    """Nanda et al.'s restricted loss (all pairs) and excluded loss (training pairs), against the
    noisy and the clean labels (measurements.md §3)."""
    (r_noisy, r_clean), (e_noisy, e_clean) = c.restricted_nll, c.excluded_nll
    return {
        "restricted_loss": r_noisy.mean().item(),
        "restricted_loss_clean": r_clean.mean().item(),
        "excluded_loss": e_noisy.mean().item(),
        "excluded_loss_clean": e_clean.mean().item(),
    }


@measure(extra=("restricted_loss_train_clean", "restricted_loss_train_noisy", "restricted_loss_train_noisy_vs_clean",
                "excluded_loss_train_clean", "excluded_loss_train_noisy", "excluded_loss_train_noisy_vs_clean"))
def circuits_by_label(c: Checkpoint) -> dict[str, float]:
    """Restricted and excluded loss over the clean- and the noisy-labelled training examples
    apart; ``*_noisy_vs_clean``: the noisy-labelled ones scored against their clean label."""
    tr, noisy = c.dataset.train_idx, c.noisy_tr
    r_noisy, r_clean = (r[tr] for r in c.restricted_nll)
    e_noisy, e_clean = c.excluded_nll
    return {
        "restricted_loss_train_clean": _nan_mean(r_noisy[~noisy]),
        "restricted_loss_train_noisy": _nan_mean(r_noisy[noisy]),
        "restricted_loss_train_noisy_vs_clean": _nan_mean(r_clean[noisy]),
        "excluded_loss_train_clean": _nan_mean(e_noisy[~noisy]),
        "excluded_loss_train_noisy": _nan_mean(e_noisy[noisy]),
        "excluded_loss_train_noisy_vs_clean": _nan_mean(e_clean[noisy]),
    }


@measure(headline=("sum_sq_weights",), extra=lambda run: [f"norm_{k}" for k in family(run.config).param_names])
def weights(c: Checkpoint) -> dict[str, float]:
    """Σθ² over all parameters and each parameter's Frobenius norm (measurements.md §4)."""
    return {"sum_sq_weights": sum_sq_weights(c.params).item(), **weight_norms(c.params)}


@measure(headline=("gini_W_E", "key_fve", "gini_W_L"))
def spectra(c: Checkpoint) -> dict[str, float]:
    """Gini of the embedding's N_k, the key frequencies' share of the logits' power, and Gini of
    the output curves' spectrum (measurements.md §2, §3b)."""
    total = centered_logit_power(c.logits).item()
    return {
        "gini_W_E": gini(c.norms).item(),
        "key_fve": c.power[c.key_freqs - 1].sum().item() / total if total > 0 else math.nan,
        "gini_W_L": gini(frequency_norms(c.curves["out"].T)).item(),  # spectrum over the output class
    }


@measure(headline=("ipr_mean", "n_periodic"))
def neuron_periodicity(c: Checkpoint) -> dict[str, float]:
    """Mean neuron IPR and the number of periodic neurons (IPR >= PERIODIC_IPR; measurements.md §5)."""
    return {"ipr_mean": c.neuron_ipr.mean().item(), "n_periodic": float((c.neuron_ipr >= PERIODIC_IPR).sum())}


@measure(headline=("shift_kl", "shift_within1"))
def test_shift(c: Checkpoint) -> dict[str, float]:
    """The distribution of the predicted shift (prediction − (a + b)) on the test pairs against
    the noise distribution (measurements.md §5)."""
    cfg, te, p = c.config, c.dataset.test_idx, c.p
    pmf = noise_pmf(cfg.noise_n, cfg.p_bin, p, cfg.noise_frac, cfg.noise_kind)
    q = shift_distribution(c.flat[te].argmax(-1), te // p, te % p, p)
    return {"shift_kl": shift_kl(q, pmf), "shift_within1": shift_within(q, 1)}


@measure(extra=lambda run: [x_column(x) for x in _xs(run)])
def memorized_by_x(c: Checkpoint) -> dict[str, float]:
    """The memorized fraction of the noisy-labelled training examples, per noise value X."""
    ds, tr = c.dataset, c.dataset.train_idx
    x_tr = ds.noise[tr]
    by_x = fraction_by_noise((c.stats["pred"] == ds.noisy_labels[tr])[c.noisy_tr], x_tr[c.noisy_tr])
    return {x_column(x): by_x.get(x, math.nan) for x in _xs(c.run)}


@measure(extra=lambda run: [excluded_x_column(x) for x in _xs(run)])
def excluded_by_x(c: Checkpoint) -> dict[str, float]:
    """Excluded loss (noisy labels) of the noisy-labelled training examples, per noise value X."""
    x_tr = c.dataset.noise[c.dataset.train_idx]
    e_noisy = c.excluded_nll[0]
    return {excluded_x_column(x): _nan_mean(e_noisy[c.noisy_tr & (x_tr == x)]) for x in _xs(c.run)}


EXTRACTION_COLUMNS = ("extraction_acc_test", "extraction_acc_train_noisy", "extraction_acc_train_clean",
                      "extraction_diagonals")


@measure(extra=EXTRACTION_COLUMNS)
def extraction(c: Checkpoint) -> dict[str, float]:
    """Extraction accuracy (Liu & Lu 2026; science.md §12): the restricted logits' accuracy against
    the clean labels on the test pairs and on the noisy- and clean-labelled training pairs, and how
    many of the p anti-diagonals a + b = s they predict right (measurements.md, extraction)."""
    ds, tr = c.dataset, c.dataset.train_idx
    clean = ds.clean_labels
    return {
        "extraction_acc_test": extraction_accuracy(c.restricted, clean, ds.test_idx),
        "extraction_acc_train_noisy": extraction_accuracy(c.restricted, clean, tr[c.noisy_tr]),
        "extraction_acc_train_clean": extraction_accuracy(c.restricted, clean, tr[~c.noisy_tr]),
        "extraction_diagonals": float(correct_diagonals(c.restricted, c.p).sum()),
    }


AUDIT_RPREC_SCORES = ("loss", "margin", "restricted_disagree", "restricted_nll")


def audit_column(score: str) -> str:
    return f"audit_rprec_{score}"


@measure(extra=tuple(audit_column(s) for s in AUDIT_RPREC_SCORES))
def label_audit(c: Checkpoint) -> dict[str, float]:
    """The label audit at budget B = n_noisy (precision = recall there, "R-precision"; the random
    baseline is the noisy fraction) for each one-checkpoint score (audit.audit_scores; the first-fit
    scores need the whole history and are in analysis/audit.csv). NaN without noisy labels."""
    ds, tr = c.dataset, c.dataset.train_idx
    given = ds.noisy_labels[tr]
    scores = audit_scores(c.stats["nll_noisy"], c.stats["margin"], c.restricted[tr].argmax(-1),
                          c.restricted_nll[0][tr], given)
    k = int(c.noisy_tr.sum())
    return {audit_column(s): (audit_curve(scores[s], c.noisy_tr, torch.tensor([k]))["precision"][0].item()
                              if k else math.nan) for s in AUDIT_RPREC_SCORES}


def _transformer_columns(run: rundir.Run) -> list[str]:
    """The transformer views' columns (transformer runs only: other runs' files keep their bytes)."""
    if run.config.model != "transformer":
        return []
    heads = [c for h in range(run.config.n_heads) for c in (f"head{h}_freq", f"head{h}_freq_share")]
    return ["attn_to_a", "attn_to_b", "attn_to_eq", *heads, "neuron_clusters", "neuron_clustered_frac",
            "neuron_freq_share", "rank_W_L", "n_keys_nanda_rule"]


@measure(extra=_transformer_columns)
def transformer_views(c: Checkpoint) -> dict[str, float]:
    """Nanda et al.'s views of their transformer (analysis.transformer_views): the "=" position's
    mean attention on a, b and itself; per head, the dominant frequency of its score on token a
    and that frequency's share of the score's variance; the neurons' frequency clusters by their
    rule (count of clusters, the fraction of live neurons in one, the mean explained share); the
    effective rank of W_L = W_out @ W_U[:, :p] at 99 % of its energy; the number of key
    frequencies by their own rule (nanda_key_frequencies: distinct dominant neuron frequencies)."""
    P, p = c.params, c.p
    shares = attention_shares(attention_pattern(P)).tolist()
    out = {"attn_to_a": shares[0], "attn_to_b": shares[1], "attn_to_eq": shares[2]}
    k, share = dominant_frequency(attention_scores(P)[0].T)  # each head's score on token a, [H, p]
    for h in range(k.shape[0]):
        out[f"head{h}_freq"], out[f"head{h}_freq_share"] = float(k[h]), float(share[h])
    acts = torch.relu(grid_pre(P).to(torch.float64)) if c.config.act == "relu" else \
        torch.nn.functional.gelu(grid_pre(P).to(torch.float64))
    freqs, fve, their_keys = neuron_frequencies_and_keys(acts)
    clusters = frequency_clusters(freqs, fve)
    live = int((~fve.isnan()).sum())
    out |= {"neuron_clusters": float(len(clusters)),
            "neuron_clustered_frac": sum(clusters.values()) / live if live else math.nan,
            "neuron_freq_share": fve.nanmean().item(),
            "rank_W_L": float(effective_rank(P["W_out"].to(torch.float64) @ P["W_U"].to(torch.float64)[:, :p])),
            "n_keys_nanda_rule": float(their_keys.numel())}
    return out



# ------------------------------------------------------------------ numerics (Prieto et al. 2025; measurements.md)

NUMERICS_COLUMNS = ("softmax_collapse_f32", "softmax_collapse_f64", "zero_loss_frac_f32", "logit_gap_mean")


def _is_classifier(run: rundir.Run) -> bool:
    """A family whose outputs are softmax logits (evaluation reports cross-entropy); not the MSE family."""
    return family(run.config).loss == "cross_entropy"


@measure(extra=lambda run: list(NUMERICS_COLUMNS) if _is_classifier(run) else [])
def softmax_collapse(c: Checkpoint) -> dict[str, float]:
    """On the training examples: the fraction whose sum exp(z - max z) rounds to exactly 1 in float32
    and in float64, the fraction whose float32 softmax cross-entropy against the training (noisy)
    label is exactly 0, and the mean top-logit gap (analysis.numerics; science.md sections 7, 11)."""
    tr = c.dataset.train_idx
    z = c.flat[tr]
    return {
        "softmax_collapse_f32": softmax_collapse_fraction(z, torch.float32).item(),
        "softmax_collapse_f64": softmax_collapse_fraction(z, torch.float64).item(),
        "zero_loss_frac_f32": zero_loss_fraction(z, c.dataset.noisy_labels[tr], torch.float32).item(),
        "logit_gap_mean": top_logit_gap(z).mean().item(),
    }


def _grad_cos_columns(run: rundir.Run) -> list[str]:
    if not _is_classifier(run):
        return []
    return [f"grad_cos_{k}" for k in (*family(run.config).param_names, "all")]


@measure(extra=_grad_cos_columns)
def gradient_alignment(c: Checkpoint) -> dict[str, float]:
    """cos(-grad, w) per weight tensor and over all of them (analysis.numerics.descent_weight_cosines),
    the gradient being that of the run's own training loss (config.loss in config.loss_dtype, the
    family's batched_loss) on the training set: what the optimizer received at this checkpoint."""
    ds, tr = c.dataset, c.dataset.train_idx
    _, grads = training_gradients(c.family, c.params, tr // c.p, tr % c.p, ds.noisy_labels[tr], c.config)
    return {f"grad_cos_{k}": v.item() for k, v in descent_weight_cosines(c.params, grads).items()}


__all__ = ["AUDIT_RPREC_SCORES", "EXTRACTION_COLUMNS", "MEASURES", "NUMERICS_COLUMNS", "Checkpoint", "Measure",
           "audit_column", "columns", "excluded_x_column", "headline_columns", "measure", "measure_row", "x_column",
           "x_value_columns"]
