"""Tables as pandas DataFrames, for notebooks (pandas is an optional extra: pip install 'interp-grok[pandas]').

- analysis_frame(an): progress.csv, one row per checkpoint, indexed by epoch (``Analysis.to_frame()``)
- memorization_frame(run, an): one row per training example: a, b, X, clean and noisy label, first
  fit epoch, forgetting events, final prediction
- runs_frame(runs): one row per run: every setting and the final metrics, for comparing runs

Pure functions: nothing here prints or writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..config import Config

if TYPE_CHECKING:
    import pandas as pd

    from ..rundir import Run
    from .pipeline import Analysis


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("DataFrames need pandas, an optional extra: pip install 'interp-grok[pandas]'") from None
    return pandas


def analysis_frame(an: Analysis) -> pd.DataFrame:
    """progress.csv as a DataFrame indexed by epoch (one column per measurement, float64)."""
    pd = _pandas()
    df = pd.DataFrame(an.rows)
    df["epoch"] = df["epoch"].astype("int64")
    return df.set_index("epoch")


def memorization_frame(run: Run, an: Analysis) -> pd.DataFrame:
    """One row per training example, in the order of run.dataset.train_idx:

    pair (a * p + b), a, b, X (label noise), clean_label, noisy_label, noisy (X != 0 mod p),
    first_fit_epoch (first checkpoint predicting the noisy label, -1 never), forgetting_events,
    final_pred (argmax at the last analyzed checkpoint), final_margin, memorized (final_pred ==
    noisy_label), corrected (final_pred == clean_label, for noisy examples).
    """
    from .memorization import first_fit_epoch, forgetting_events
    from .pipeline import fit_matrix

    pd = _pandas()
    ds = run.dataset
    tr = ds.train_idx
    first = an.first_fit_epoch if an.first_fit_epoch is not None else first_fit_epoch(fit_matrix(run, an), an.epochs)
    forgot = an.forgetting_events if an.forgetting_events is not None else forgetting_events(fit_matrix(run, an))
    pred = an.memo["pred"][-1].long()
    return pd.DataFrame({
        "pair": tr.numpy(), "a": ds.a[tr].numpy(), "b": ds.b[tr].numpy(), "X": ds.noise[tr].numpy(),
        "clean_label": ds.clean_labels[tr].numpy(), "noisy_label": ds.noisy_labels[tr].numpy(),
        "noisy": ds.is_noisy[tr].numpy(), "first_fit_epoch": first.numpy(), "forgetting_events": forgot.numpy(),
        "final_pred": pred.numpy(), "final_margin": an.memo["margin"][-1].numpy(),
        "memorized": (pred == ds.noisy_labels[tr]).numpy(), "corrected": (pred == ds.clean_labels[tr]).numpy(),
    })


_SETTINGS = [f for f in Config.__dataclass_fields__ if f != "checkpoint_epochs"]


def runs_frame(runs: Iterable[Run | tuple[Run, Analysis]]) -> pd.DataFrame:
    """One row per run: path, every setting, the trainer's last evaluation (final_*), and, where an
    analysis is given (pairs (run, an)), its key frequencies and share of ||W_E||^2."""
    pd = _pandas()
    rows = []
    for item in runs:
        run, an = item if isinstance(item, tuple) else (item, None)
        c = run.config.to_dict()
        row = {"path": str(run.path), **{k: c[k] for k in _SETTINGS}}
        row["betas"] = tuple(row["betas"])
        last = run.evals[-1] if run.evals else {}
        row |= {f"final_{k}": v for k, v in last.items() if k != "kind"}
        if an is not None:
            share = "key_freq_share_of_nonconstant_W_E_norm2"
            row |= {"key_freqs": an.key_freqs.tolist(), share: an.summary.get(share)}
        rows.append(row)
    return pd.DataFrame(rows)
