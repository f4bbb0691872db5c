"""Analysis: what a trained run's weights and checkpoints say, measured.

This subpackage owns two things:

- pure measurement functions on tensors (nothing here reads or writes files): the Fourier basis,
  spectra and key frequencies (``fourier``), restricted and excluded loss and the logits' own
  spectrum (``circuits``), memorization of noisy versus clean labels per example (``memorization``),
  per-neuron IPR and the pruning test with its control (``neurons``), phases under label noise
  (``phases``), softmax collapse, gradient-weight alignment and loss spikes (``numerics``), and
  pandas views of the results (``frames``, pandas optional);
- the per-checkpoint measures (``measures``): each group of progress.csv columns is one
  function registered with ``@measure``, reading a ``Checkpoint`` whose shared intermediates
  (grid logits, restricted and excluded log-probabilities, neuron curves) are computed once;
- what became of the noisy labels (``audit``, pure): extraction accuracy of the restricted
  logits against the clean labels, and the label audit (precision / recall at budget B of each
  per-example score); ``correction``: the audit of a run's checkpoint, RUN/analysis/audit.csv,
  and correct-and-resume (``relabel_run`` writes a new run directory);
- the whole-run pipeline (``pipeline``): every checkpoint of a run through those measurements
  (``analyze_run`` -> ``Analysis``) and RUN/analysis/ on disk (``write_analysis``,
  ``read_analysis``, ``analyze_run_dir``, ``is_current``, ``ANALYSIS_VERSION``).

It sits above the run directory format (interp_grok.rundir) and the model families, and below
sweeps, plotting and the CLI; nothing here imports those (tests/test_layout.py checks it).
The package's public API (``import interp_grok as ig``) re-exports the names a notebook needs.
"""

from .audit import (
    AUDIT_BUDGET_FRACS,
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
from .circuits import (
    LOGIT_KEY_RULE,
    LOGIT_KEY_Z,
    anti_diagonal_sums,
    centered_logit_power,
    check_grid_logits,
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
    sum_direction_basis,
    tie_credit,
)
from .correction import Audit, RelabelResult, audit_checkpoint, audit_run, read_audit, relabel_run, write_audit
from .fourier import (
    KEY_FREQ_RULE,
    KEY_FREQ_THRESHOLD,
    basis_norms,
    fourier_basis,
    frequency_norms,
    gini,
    ipr,
    key_frequencies,
    key_set_is_flat,
)
from .frames import analysis_frame, memorization_frame, runs_frame
from .measures import (
    MEASURES,
    Checkpoint,
    Measure,
    excluded_x_column,
    measure,
    measure_row,
    x_column,
    x_value_columns,
)
from .memorization import (
    example_stats,
    first_fit_epoch,
    forgetting_events,
    fraction_by_noise,
    predicted_shift,
    shift_distribution,
    shift_kl,
    shift_within,
)
from .neurons import (
    PERIODIC_IPR,
    neuron_ipr,
    neuron_sizes,
    norm_matched_controls,
    pruning_experiment,
    size_ranked_pruning,
)
from .numerics import (
    descent_weight_cosines,
    first_epoch_reaching,
    loss_spikes,
    numerics_readout,
    softmax_collapse_fraction,
    stalled,
    top_logit_gap,
    training_gradients,
    zero_loss_fraction,
)
from .phases import (
    PHASES,
    TRANSITIONS,
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
from .pipeline import (
    ANALYSIS_VERSION,
    PROGRESS_COLUMNS,
    Analysis,
    analysis_dir,
    analyze_checkpoint,
    analyze_run,
    analyze_run_dir,
    fit_matrix,
    is_current,
    landmarks,
    progress_columns,
    read_analysis,
    stored_epochs,
    summarize,
    write_analysis,
)

__all__ = [
    # fourier
    "fourier_basis", "basis_norms", "frequency_norms", "key_frequencies", "key_set_is_flat", "gini", "ipr",
    "KEY_FREQ_RULE", "KEY_FREQ_THRESHOLD",
    # circuits
    "sum_direction_basis", "check_grid_logits", "anti_diagonal_sums", "project_sum_frequencies",
    "restricted_logits", "excluded_logits", "restricted_loss", "excluded_loss", "tie_credit", "restricted_accuracy",
    "lookup_table_logits", "logit_frequency_power", "centered_logit_power", "key_fve", "logit_key_frequencies",
    "excluded_loss_by_frequency", "LOGIT_KEY_RULE", "LOGIT_KEY_Z",
    # memorization
    "example_stats", "predicted_shift", "shift_distribution", "shift_kl", "shift_within", "first_fit_epoch",
    "forgetting_events", "fraction_by_noise",
    # neurons
    "neuron_ipr", "neuron_sizes", "norm_matched_controls", "pruning_experiment", "size_ranked_pruning", "PERIODIC_IPR",
    # phases
    "phase_trajectory", "transition_epochs", "settled", "run_phases", "doshi_phase_trajectory", "last_quarter_change",
    "turning_epochs", "phase_changes",
    "nanda_phase_epochs",
    "PHASES", "TRANSITIONS",
    # frames (pandas)
    "analysis_frame", "memorization_frame", "runs_frame",
    # pipeline
    "Analysis", "analyze_run", "analyze_checkpoint", "analyze_run_dir", "is_current", "write_analysis",
    "read_analysis", "analysis_dir", "stored_epochs", "summarize", "landmarks", "fit_matrix", "x_value_columns",
    "x_column", "excluded_x_column", "progress_columns", "PROGRESS_COLUMNS", "ANALYSIS_VERSION",
    # measures (the per-checkpoint columns)
    "MEASURES", "Measure", "Checkpoint", "measure", "measure_row",
    # audit (extraction accuracy, the label audit) and correction (a run's audit, correct-and-resume)
    "lookup_extraction_control",
    "extraction_accuracy", "correct_diagonals", "audit_scores", "expected_hits", "audit_curve", "audit_budgets",
    "audit_table", "flag", "AUDIT_SCORES", "AUDIT_BUDGET_FRACS", "Audit", "audit_checkpoint", "audit_run",
    "write_audit", "read_audit", "relabel_run", "RelabelResult",
    # numerics
    "softmax_collapse_fraction", "zero_loss_fraction", "top_logit_gap", "descent_weight_cosines",
    "training_gradients", "loss_spikes", "first_epoch_reaching", "stalled", "numerics_readout",
]
