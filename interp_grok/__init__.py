"""interp-grok: train and take apart small MLPs that grok modular addition with noisy labels.

Public API (everything a notebook needs; the CLI is a thin layer over it). Shapes: p tokens,
T checkpoints, n_train training examples; pairs (a, b) are flat in a-major order (a * p + b).

- training: Config, train, resume, train_batch, resume_batch (K runs as one stacked model),
  make_dataset, Dataset, SimpleMLP
- run directories: load_run, Run (read-only; safetensors and JSON, nothing unpickled;
  run.params(epoch): the five float32 weights; run.compact(epoch): W_E, T_a, T_b, b_in, W_L)
- model families: family(config) -> ModelFamily (param names and shapes, init, forward, loss,
  full-grid outputs, neuron curves, embedding), FAMILIES {mlp, quadratic}, gromov_solution
                                                                   (interp_grok.models)
- model math (the seed MLP): mlp_logits, grid_logits ([p, p, p] float32 indexed a, b, c), grid_hidden,
  token_tables, compact_params, is_compact, cross_entropy, ablate_neurons,
  neuron_curves (each neuron's input and output curves)            (interp_grok.models.mlp)
  stablemax_cross_entropy (Prieto et al.'s StableMax loss)         (interp_grok.models.losses)
- measurements (pure functions on tensors):
  fourier_basis, frequency_norms ([floor(p/2)], index k - 1 is frequency k), key_frequencies,
  key_set_is_flat, gini, ipr                                       (interp_grok.analysis.fourier)
  project_sum_frequencies, restricted_loss, excluded_loss,
  restricted_accuracy, lookup_table_logits (the memorization control), tie_credit,
  logit_frequency_power, logit_key_frequencies, key_fve, excluded_loss_by_frequency
                                                                   (interp_grok.analysis.circuits)
  neuron_ipr, neuron_sizes, norm_matched_controls, pruning_experiment, size_ranked_pruning
                                                                   (interp_grok.analysis.neurons)
  shift_distribution, shift_kl, shift_within                       (interp_grok.analysis.memorization)
  softmax_collapse_fraction, zero_loss_fraction, top_logit_gap, descent_weight_cosines,
  loss_spikes, first_epoch_reaching, stalled, numerics_readout     (interp_grok.analysis.numerics)
  example_stats, first_fit_epoch, forgetting_events, ...           (interp_grok.analysis.memorization)
  grid_metrics, metrics_from_logits, sum_sq_weights, weight_norms  (interp_grok.evaluation)
  noise_floor, noise_pmf                                           (interp_grok.noise)
- whole-run analysis: analyze_run, write_analysis, read_analysis, Analysis, landmarks,
  fit_matrix                                                       (interp_grok.analysis.pipeline)
- per-checkpoint measures: x_value_columns, x_column; the registry is
  interp_grok.analysis.measures (MEASURES, @measure, Checkpoint)   (interp_grok.analysis.measures)
- what became of the noisy labels: extraction_accuracy, correct_diagonals (the restricted logits
  against the clean labels), lookup_extraction_control (its lookup-table control);
  audit_scores, expected_hits, audit_curve, audit_budgets, audit_table,
  flag (the label audit: precision / recall at budget B, ties in expectation)
                                                                   (interp_grok.analysis.audit)
  audit_checkpoint, audit_run, read_audit (RUN/analysis/audit.csv), relabel_run (correct-and-resume:
  a new run directory; continue it with resume)                    (interp_grok.analysis.correction)
- the transformer's views (Nanda et al.): attention_shares, dominant_frequency, neuron_frequencies,
  frequency_clusters, nanda_key_frequencies (their key rule), effective_rank
                                                                   (interp_grok.analysis.transformer_views)
  attention_pattern, transformer_grid_pre (the MLP pre-activations at "=" over the grid)
                                                                   (interp_grok.models.transformer)
- phases under noise: phase_trajectory, doshi_phase_trajectory, transition_epochs, run_phases,
  last_quarter_change, turning_epochs, phase_changes, nanda_phase_epochs (Nanda et al.'s three
  phases as epochs; CLEANUP_DROP), settled, PHASES                (interp_grok.analysis.phases)
- sweeps: load_sweep (SweepResults: rows of SWEEP/analysis/table.csv, to_frame(), run(name),
  analysis(name)), analyze_sweep                                   (interp_grok.sweep.table;
  planning and training a sweep: interp_grok.sweep.runner, re-exported by interp_grok.sweep)
- reference runs: load_reference, load_reference_runs, reference_dir, figures_dir
                                                                   (interp_grok.reference)
- tables (pandas, optional): Analysis.to_frame, analysis_frame, memorization_frame, runs_frame
                                                                   (interp_grok.analysis.frames)
- figures: interp_grok.plotting (imported on demand; it loads matplotlib and leaves the backend
  alone); plotting.draw_all draws what `interp-grok analyze` draws

Layout, in layers; a module imports only from its own layer and the ones before it
(tests/test_layout.py checks it): config, noise | data, models/ | evaluation | rundir | train |
analysis/ | sweep/, reference | plotting | cli.
"""

from .analysis.audit import (
    AUDIT_SCORES,
    audit_budgets,
    audit_curve,
    audit_scores,
    audit_table,
    correct_diagonals,
    expected_hits,
    extraction_accuracy,
    flag,
    lookup_extraction_control,
)
from .analysis.circuits import (
    excluded_logits,
    excluded_loss,
    excluded_loss_by_frequency,
    key_fve,
    logit_frequency_power,
    logit_key_frequencies,
    lookup_table_logits,
    project_sum_frequencies,
    restricted_accuracy,
    restricted_logits,
    restricted_loss,
    tie_credit,
)
from .analysis.correction import Audit, RelabelResult, audit_checkpoint, audit_run, read_audit, relabel_run
from .analysis.fourier import fourier_basis, frequency_norms, gini, ipr, key_frequencies, key_set_is_flat
from .analysis.frames import analysis_frame, memorization_frame, runs_frame
from .analysis.measures import x_column, x_value_columns
from .analysis.memorization import (
    example_stats,
    first_fit_epoch,
    forgetting_events,
    fraction_by_noise,
    predicted_shift,
    shift_distribution,
    shift_kl,
    shift_within,
)
from .analysis.neurons import neuron_ipr, neuron_sizes, norm_matched_controls, pruning_experiment, size_ranked_pruning
from .analysis.numerics import (
    descent_weight_cosines,
    first_epoch_reaching,
    loss_spikes,
    numerics_readout,
    softmax_collapse_fraction,
    stalled,
    top_logit_gap,
    zero_loss_fraction,
)
from .analysis.phases import (
    CLEANUP_DROP,
    PHASES,
    doshi_phase_trajectory,
    last_quarter_change,
    nanda_phase_epochs,
    phase_changes,
    phase_trajectory,
    run_phases,
    settled,
    transition_epochs,
    turning_epochs,
)
from .analysis.pipeline import (
    Analysis,
    analyze_run,
    fit_matrix,
    landmarks,
    read_analysis,
    write_analysis,
)
from .analysis.transformer_views import (
    attention_shares,
    dominant_frequency,
    effective_rank,
    frequency_clusters,
    nanda_key_frequencies,
    neuron_frequencies,
)
from .config import Config, ConfigError, checkpoint_schedule
from .data import Dataset, make_dataset
from .evaluation import grid_metrics, metrics_from_logits, sum_sq_weights, weight_norms
from .models import FAMILIES, ModelFamily, family
from .models.losses import stablemax_cross_entropy
from .models.mlp import (
    SimpleMLP,
    ablate_neurons,
    compact_params,
    cross_entropy,
    grid_hidden,
    grid_logits,
    is_compact,
    mlp_logits,
    neuron_curves,
    token_tables,
)
from .models.quadratic import gromov_solution
from .models.transformer import attention_pattern
from .models.transformer import grid_pre as transformer_grid_pre
from .noise import noise_floor, noise_pmf
from .reference import figures_dir, load_reference, load_reference_runs, reference_dir
from .rundir import Run, RunDirError, load_run
from .sweep.table import SweepResults, analyze_sweep, load_sweep
from .train import TrainError, resume, resume_batch, train, train_batch

__version__ = "0.1.0"


def to_hooked_transformer(run: Run, epoch: int | None = None, device: str = "cpu"):
    """The checkpoint of a transformer run at ``epoch`` (default: its last) as a TransformerLens
    model: hooks, ``run_with_cache``, activation patching, on tokens [batch, 3] = (a, b, p).

    TransformerLens >= 4 has no HookedTransformer class any more: this returns its replacement, a
    TransformerBridge around a TL-native model holding the run's weights
    (models.transformer.to_transformer_lens). Its logits at the last position are the run's, all
    of them (the "=" column too, unless the run has eq_logit false); tests check them on the full
    grid. Needs the optional extra: ``pip install 'interp-grok[lens]'``.
    """
    from .models.transformer import to_transformer_lens

    if run.config.model != "transformer":
        raise ValueError(f"{run.path}: a {run.config.model} run; only transformer runs have a TransformerLens form")
    epochs = run.checkpoint_epochs
    epoch = epochs[-1] if epoch is None else epoch
    return to_transformer_lens(run.params(epoch), run.config, device)


__all__ = [
    "lookup_extraction_control",
    "extraction_accuracy", "correct_diagonals", "audit_scores", "expected_hits", "audit_curve", "audit_budgets",
    "audit_table", "flag", "AUDIT_SCORES", "Audit", "audit_checkpoint", "audit_run", "read_audit", "relabel_run",
    "RelabelResult",
    "lookup_table_logits", "restricted_accuracy", "tie_credit", "logit_frequency_power", "logit_key_frequencies",
    "key_fve", "excluded_loss_by_frequency", "neuron_ipr", "neuron_sizes", "norm_matched_controls",
    "pruning_experiment", "size_ranked_pruning", "shift_distribution", "shift_kl", "shift_within",
    "ablate_neurons", "Analysis", "analysis_frame", "analyze_run", "checkpoint_schedule", "compact_params",
    "Config", "ConfigError", "cross_entropy", "Dataset", "example_stats", "excluded_logits", "excluded_loss",
    "figures_dir", "first_fit_epoch", "fit_matrix", "forgetting_events", "fourier_basis", "fraction_by_noise",
    "frequency_norms", "gini", "grid_hidden", "grid_logits", "grid_metrics", "ipr", "is_compact",
    "key_frequencies", "key_set_is_flat", "landmarks", "load_reference", "load_reference_runs", "load_run",
    "make_dataset", "memorization_frame", "metrics_from_logits", "mlp_logits", "neuron_curves", "noise_floor",
    "noise_pmf", "predicted_shift", "project_sum_frequencies", "read_analysis", "reference_dir",
    "restricted_logits", "restricted_loss", "resume", "Run", "RunDirError", "runs_frame", "SimpleMLP",
    "sum_sq_weights", "token_tables", "train", "train_batch", "resume_batch", "TrainError", "weight_norms",
    "write_analysis", "x_column",
    "x_value_columns", "PHASES", "doshi_phase_trajectory", "phase_trajectory", "run_phases", "settled",
    "last_quarter_change",
    "nanda_phase_epochs", "CLEANUP_DROP",
    "attention_shares", "dominant_frequency", "effective_rank", "frequency_clusters", "nanda_key_frequencies",
    "neuron_frequencies", "attention_pattern", "transformer_grid_pre",
    "transition_epochs", "turning_epochs", "phase_changes",
    "SweepResults",
    "analyze_sweep", "load_sweep",
    "FAMILIES", "ModelFamily", "family", "gromov_solution", "to_hooked_transformer",
    "stablemax_cross_entropy", "softmax_collapse_fraction", "zero_loss_fraction", "top_logit_gap",
    "descent_weight_cosines", "loss_spikes", "first_epoch_reaching", "stalled", "numerics_readout",
]
