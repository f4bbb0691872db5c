"""interp-grok: train and take apart small MLPs that grok modular addition with noisy labels.

Public API (everything a notebook needs; the CLI is a thin layer over it):

- training: Config, train, resume, make_dataset, Dataset, SimpleMLP
- run directories: load_run, Run (read-only; safetensors and JSON, nothing unpickled)
- model math: mlp_logits, grid_logits, grid_hidden, token_tables, cross_entropy, ablate_neurons
- measurements (pure functions on tensors):
  fourier_basis, frequency_norms, key_frequencies, gini, ipr,
  neuron_curves                                                    (interp_grok.fourier)
  project_sum_frequencies, restricted_loss, excluded_loss,
  restricted_accuracy, lookup_table_logits (the memorization control)  (interp_grok.circuits)
  example_stats, first_fit_epoch, forgetting_events, ...           (interp_grok.memorization)
  grid_metrics, metrics_from_logits, sum_sq_weights, weight_norms  (interp_grok.evaluation)
  noise_floor, noise_pmf                                           (interp_grok.noise)
- whole-run analysis: analyze_run, read_analysis, Analysis         (interp_grok.analyze)
- figures: interp_grok.plotting (imported on demand; it loads matplotlib)
"""

from .analyze import Analysis, analyze_run, read_analysis
from .circuits import (
    excluded_logits,
    excluded_loss,
    lookup_table_logits,
    project_sum_frequencies,
    restricted_accuracy,
    restricted_logits,
    restricted_loss,
)
from .config import Config, ConfigError, checkpoint_schedule
from .data import Dataset, make_dataset
from .evaluation import grid_metrics, metrics_from_logits, sum_sq_weights, weight_norms
from .fourier import fourier_basis, frequency_norms, gini, ipr, key_frequencies, neuron_curves
from .memorization import example_stats, first_fit_epoch, forgetting_events, fraction_by_noise, predicted_shift
from .model import (
    SimpleMLP,
    ablate_neurons,
    cross_entropy,
    grid_hidden,
    grid_logits,
    mlp_logits,
    token_tables,
)
from .noise import noise_floor, noise_pmf
from .rundir import Run, RunDirError, load_run
from .train import TrainError, resume, train

__version__ = "0.1.0"

__all__ = [
    "lookup_table_logits", "restricted_accuracy",
    "ablate_neurons", "Analysis", "analyze_run", "checkpoint_schedule", "Config", "ConfigError",
    "cross_entropy", "Dataset", "example_stats", "excluded_logits", "excluded_loss", "first_fit_epoch",
    "forgetting_events", "fourier_basis", "fraction_by_noise", "frequency_norms", "gini", "grid_hidden",
    "grid_logits", "grid_metrics", "ipr", "key_frequencies", "load_run", "make_dataset", "metrics_from_logits",
    "mlp_logits", "neuron_curves", "noise_floor", "noise_pmf", "predicted_shift", "project_sum_frequencies",
    "read_analysis", "restricted_logits", "restricted_loss", "resume", "Run", "RunDirError", "SimpleMLP",
    "sum_sq_weights", "token_tables", "train", "TrainError", "weight_norms",
]
