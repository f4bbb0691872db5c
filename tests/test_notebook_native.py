"""Issue 10: what a researcher meets on day one in Jupyter — backend, inline figures, panels,
reprs, shapes, the public API, DataFrames, run naming and resume checks, figure details."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import nbformat
import pytest
import torch
from conftest import TINY, run_cli
from nbclient import NotebookClient

import interp_grok as ig
from interp_grok import plotting
from interp_grok.analysis.pipeline import analyze_run
from interp_grok.reference import ReferenceNotFound, figures_dir, reference_dir

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "checkpoints"


@pytest.fixture(scope="module")
def tiny_an(tiny_run):
    run = ig.load_run(tiny_run)
    return run, analyze_run(run)


# ------------------------------------------------------------------ 1. backend and inline figures


def test_importing_plotting_leaves_the_backend_alone():
    code = "import matplotlib, interp_grok, interp_grok.plotting; print(matplotlib.get_backend())"
    for backend in ("pdf", "svg"):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MPLBACKEND": backend},
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == backend


def test_in_a_jupyter_kernel_figures_display_inline(tmp_path):
    cells = [
        "import matplotlib\nbefore = matplotlib.get_backend()\nimport interp_grok.plotting as P\n"
        "after = matplotlib.get_backend()\nprint(before, after, sep='|')",
        f"import interp_grok as ig\nrun = ig.load_run({str(REF / 'n0')!r})\nan = ig.read_analysis(run)\n"
        "fig = P.plot_losses(an, an.summary['noise_floor'], 'n = 0')",
        f"P.save_figure(P.plot_spectrum_heatmap(an, 'n = 0'), {str(tmp_path / 'h.png')!r})",
        "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0]);",  # the user's own figures too
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    before, after = nb.cells[0].outputs[0]["text"].strip().split("|")
    assert "inline" in before and after == before
    for cell in nb.cells[1:]:
        pngs = [o for o in cell.outputs if o.get("output_type") == "display_data" and "image/png" in o["data"]]
        assert len(pngs) == 1, cell.source
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_console_script_renders_headless(tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"} | {"DISPLAY": ":99"}  # a display that is not there
    res = subprocess.run([str(Path(sys.executable).parent / "interp-grok"), "analyze", str(out)], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-1000:]
    assert len(list((out / "analysis" / "figures").glob("*.png"))) == 7  # draw_all's six and the audit's


def test_panels_compose_into_a_users_figure(tiny_an):
    run, an = tiny_an
    floor = ig.noise_floor(run.config.noise_n, run.config.p_bin, run.config.p)
    fig, axes = matplotlib.pyplot.subplots(1, 2)
    assert plotting.plot_losses(an, floor, "tiny", ax=axes[0]) is fig
    assert plotting.plot_spectrum_final(an, ax=axes[1]) is fig
    assert len(axes[0].get_lines()) >= 4 and axes[0].get_title().startswith("Loss")
    assert fig.texts == [] and fig._suptitle is None  # the user's figure keeps its own title
    big = matplotlib.figure.Figure()
    left, right = big.subfigures(1, 2)
    assert plotting.plot_weight_norms(an, fig=left) is big
    assert plotting.plot_memorization(an, floor, ig.x_value_columns(run.dataset.noise), fig=right) is big
    assert len(left.axes) == 3 and len(right.axes) == 2


# ------------------------------------------------------------------ 2. finding the reference runs


def test_phase_diagram_facets_wrap_into_rows():
    """ncols=2 puts three facets in two rows, the slot left over hidden; the default is one row."""
    rows = [{"a": a, "b": b, "f": f, "final_phase": "memorization", "settled": True}
            for a in (1, 2) for b in (1, 2) for f in (1, 2, 3)]
    wrapped = plotting.plot_phase_diagram(rows, "a", "b", "f", ncols=2)
    shown = [ax for ax in wrapped.axes if ax.get_visible()]
    assert len(wrapped.axes) == 4 and len(shown) == 3
    assert [(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start) for ax in shown] == [
        (0, 0), (0, 1), (1, 0)]
    one_row = plotting.plot_phase_diagram(rows, "a", "b", "f")
    assert [ax.get_subplotspec().colspan.start for ax in one_row.axes] == [0, 1, 2]
    assert {ax.get_subplotspec().rowspan.start for ax in one_row.axes} == {0}
    plotting.plt.close("all")


def test_reference_runs_are_found_from_the_working_tree(tmp_path, monkeypatch):
    monkeypatch.delenv("INTERP_GROK_REFERENCE", raising=False)
    monkeypatch.delenv("INTERP_GROK_FIGURES", raising=False)
    monkeypatch.chdir(ROOT / "analyses")  # where Jupyter starts a notebook
    assert reference_dir() == REF and figures_dir() == ROOT / "docs" / "figures"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ReferenceNotFound, match="INTERP_GROK_REFERENCE") as e:
        reference_dir()
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setenv("INTERP_GROK_REFERENCE", str(REF))
    monkeypatch.setenv("INTERP_GROK_FIGURES", str(tmp_path / "figs"))
    assert reference_dir() == REF and figures_dir() == tmp_path / "figs"


def test_a_notebook_run_outside_a_checkout_says_where_it_looked(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERP_GROK_")} | {"MPLBACKEND": "Agg"}
    res = subprocess.run([sys.executable, str(ROOT / "analyses" / "04_noise_levels.py")], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert "no reference runs found" in last and "INTERP_GROK_REFERENCE" in last and str(tmp_path) in last


# ------------------------------------------------------------------ 3. run naming and --resume


def test_default_run_names_follow_the_settings():
    from interp_grok.cli import default_run_dir

    assert default_run_dir(ig.Config()) == Path("runs/n4")
    assert default_run_dir(ig.Config(p=23)) == Path("runs/n4_p23")
    assert default_run_dir(ig.Config(noise_n=0, lr=3e-3, betas=(0.9, 0.99))) == Path("runs/n0_lr0.003_betas0.9-0.99")
    assert default_run_dir(ig.Config(d_model=64)) == Path("runs/n4_d-model64")  # d_mlp follows d_model


def test_train_without_out_never_lands_in_the_default_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli("train", *TINY) == 0
    made = [p.name for p in (tmp_path / "runs").iterdir()]
    assert made == ["n4_p11_d-model16_epochs120_checkpoints30_eval-every10"]
    # the same command with --resume (no --out) resumes exactly that run; a finished run is left as it is
    assert run_cli("train", *TINY, "--resume") == 0
    # the default settings name runs/n4, which does not exist: refused, nothing resumed
    assert run_cli("train", "--resume") == 1
    assert "runs/n4: no such directory" in capsys.readouterr().err


def test_resume_accepts_equal_settings_and_names_a_differing_one(tiny_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    assert run_cli("train", "--resume", "--out", out, "--p", "11", "--d-model", "16", "--noise", "4") == 0
    capsys.readouterr()
    assert run_cli("train", "--resume", "--out", out, "--p", "13") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--p differs" in err and "stored 11, requested 13" in err
    assert run_cli("train", "--resume", "--out", out, "--lr", "0.003") == 2
    assert "--lr differs from the stored run (stored 0.001, requested 0.003)" in capsys.readouterr().err


def test_make_demo_refuses_a_default_run_folder_holding_other_settings(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_run, tmp_path / "runs" / "n4")  # p = 11 trained with an explicit --out runs/n4
    assert run_cli("train", "--resume") == 2  # what `make demo` runs when runs/n4 exists
    assert "--p differs from the stored run (stored 11, requested 97)" in capsys.readouterr().err


def test_version(capsys):
    from interp_grok.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"interp-grok {ig.__version__}"


# ------------------------------------------------------------------ 4. reprs, docs, shapes


def test_reprs_are_short_and_say_what_is_loaded():
    run = ig.load_run(REF / "n4")
    an = ig.read_analysis(run)
    r, a = repr(run), repr(an)
    assert len(r) < 400 and "noise_n=4" in r and f"{len(run.checkpoint_epochs)} checkpoints" in r
    assert len(a) < 400 and f"{len(an.rows)} checkpoints" in a and "key_freqs [1, 2, 4, 10, 11" in a


def test_wrong_logits_shape_is_one_clear_error():
    p = 11
    labels = torch.zeros(p * p, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"\[p, p, C\].*got shape \[121, 11\].*reshape\(11, 11, -1\)"):
        ig.restricted_loss(torch.zeros(p * p, p), torch.tensor([1]), labels)
    with pytest.raises(ValueError, match=r"labels must be int64 \[p \* p\] = \[121\]"):
        ig.excluded_loss(torch.zeros(p, p, p), torch.tensor([1]), labels[:10])


# ------------------------------------------------------------------ 5. public API and DataFrames


def test_public_api_covers_what_the_notebooks_import():
    for nb in sorted((ROOT / "analyses").glob("0*.py")):
        for line in nb.read_text().splitlines():
            if line.startswith("from interp_grok."):
                module = line.split()[1]
                assert module in ("interp_grok.reference",), f"{nb.name} imports from internal module {module}"
    for name in ("fit_matrix", "x_value_columns", "landmarks", "write_analysis", "compact_params", "runs_frame"):
        assert name in ig.__all__ and hasattr(ig, name)
    assert callable(plotting.draw_all)


def test_read_analysis_exposes_everything_memorization_stores(tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    run = ig.load_run(out)
    computed = analyze_run(run)
    ig.write_analysis(run, computed)
    back = ig.read_analysis(run)
    fit = ig.fit_matrix(run, back)
    assert torch.equal(back.first_fit_epoch, ig.first_fit_epoch(fit, back.epochs))
    assert torch.equal(back.forgetting_events, ig.forgetting_events(fit))
    assert torch.equal(back.train_noise, run.dataset.noise[run.dataset.train_idx])
    for k in ("first_fit_epoch", "forgetting_events", "train_idx", "train_noise"):
        assert torch.equal(getattr(back, k), getattr(computed, k)), k


def test_dataframes(tiny_an):
    run, an = tiny_an
    df = an.to_frame()
    assert list(df.index) == an.epochs.tolist() and df["test_loss"].tolist() == an.column("test_loss").tolist()
    m = ig.memorization_frame(run, an)
    ds = run.dataset
    assert len(m) == len(ds.train_idx)
    assert ((m["a"] * run.config.p + m["b"]) == m["pair"]).all()
    assert ((m["clean_label"] + m["X"]) % run.config.p == m["noisy_label"]).all()
    assert m["final_pred"].tolist() == an.memo["pred"][-1].tolist()
    assert m["first_fit_epoch"].tolist() == an.first_fit_epoch.tolist()
    runs = ig.runs_frame([(run, an), run])
    assert runs["p"].tolist() == [11, 11] and runs["final_epoch"].tolist() == [120, 120]
    assert runs["final_test_loss"].iloc[0] == run.evals[-1]["test_loss"]


# ------------------------------------------------------------------ 6. compact checkpoints


def test_compact_form_gives_the_same_logits(tiny_run, tmp_path):
    run = ig.load_run(tiny_run)
    P = run.params(run.checkpoint_epochs[-1])
    C = ig.compact_params(P)
    assert ig.is_compact(C) and not ig.is_compact(P)
    torch.testing.assert_close(ig.grid_logits(C), ig.grid_logits(P))
    keep = torch.arange(P["b_in"].numel()) % 3 == 0
    torch.testing.assert_close(ig.grid_logits(ig.ablate_neurons(C, keep)), ig.grid_logits(ig.ablate_neurons(P, keep)))
    for k, v in ig.neuron_curves(C).items():
        torch.testing.assert_close(v, ig.neuron_curves(P)[k], rtol=1e-5, atol=1e-6)
    ds = run.dataset
    m = ig.grid_metrics(C, "relu", ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)
    assert m["sum_sq_weights"] != m["sum_sq_weights"]  # NaN: needs the five weights
    # stored as float16 on disk, read back as float32
    from interp_grok import rundir

    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    rundir.write_compact(out, 120, P)
    back = ig.load_run(out)
    assert back.compact_epochs == [120] and "1 compact" in repr(back)
    stored = back.compact(120)
    assert all(v.dtype == torch.float32 for v in stored.values())
    torch.testing.assert_close(stored["T_a"], C["T_a"], rtol=1e-3, atol=1e-3)
    assert not torch.equal(stored["T_a"], C["T_a"])  # it is float16-rounded


# ------------------------------------------------------------------ 7. figure details


def test_key_set_flatness_is_relative_to_p():
    assert ig.key_set_is_flat(torch.arange(1, 12), 11)  # p = 23, 11 of 11
    assert not ig.key_set_is_flat(torch.tensor([1, 6, 27, 40]), 48)
    assert ig.key_set_is_flat(torch.arange(1, 45), 48)


def test_cli_reports_a_flat_key_set_as_flat(tiny_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    assert run_cli("analyze", out, "--no-figures", "--key-freqs", "1,2,3,4,5") == 0  # p = 11: 5 of 5
    text = capsys.readouterr().out
    assert "a flat spectrum" in text and "of ||W_E||^2" not in text


def _legend_texts(ax) -> list[str]:
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg else []


def test_final_spectrum_legend_has_no_empty_swatch(tiny_an):
    _run, an = tiny_an
    an_all = ig.Analysis(an.epochs, an.rows, an.norms, torch.arange(1, an.norms.shape[1] + 1), an.key_freq_source,
                         an.memo)
    fig = plotting.plot_spectrum_final(an_all)
    texts = _legend_texts(fig.axes[0])
    assert not any("other frequencies" in t for t in texts) and any("(flat)" in t for t in texts)
    fig = plotting.plot_spectrum_final(ig.Analysis(an.epochs, an.rows, an.norms, torch.tensor([1]),
                                                   an.key_freq_source, an.memo))
    assert "other frequencies" in _legend_texts(fig.axes[0])


def _inside(fig, artist) -> bool:
    fig.canvas.draw()
    box, page = artist.get_window_extent(), fig.bbox
    return box.x0 >= page.x0 and box.x1 <= page.x1 and box.y0 >= page.y0 and box.y1 <= page.y1


def test_restricted_excluded_title_fits_and_floors_are_in_the_legend():
    run = ig.load_run(REF / "n4")
    an = ig.read_analysis(run)
    fig = plotting.plot_restricted_excluded(an, an.summary["noise_floor"], "n = 4")
    assert _inside(fig, fig._suptitle)
    assert any(t.startswith("H(X) =") for t in _legend_texts(fig.axes[0]))
    assert any(t.startswith("-log P(X=0)") for t in _legend_texts(fig.axes[0]))
    assert _inside(fig, fig.axes[0].get_legend())


def test_final_spectra_legend_is_outside_the_axes():
    runs = {n: ig.read_analysis(ig.load_run(REF / f"n{n}")) for n in (0, 2)}
    fig = plotting.plot_final_spectra({f"n = {n}": an for n, an in runs.items()}, 97, {"n = 0": 0, "n = 2": 2})
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1  # right of the plot: hides no peak
    assert _inside(fig, ax.get_legend())


def test_per_x_memorization_legend_gives_group_sizes():
    run = ig.load_run(REF / "n8")
    an = ig.read_analysis(run)
    xs = ig.x_value_columns(run.dataset.noise)
    fig = plotting.plot_memorization(an, an.summary["noise_floor"], xs)
    noise = run.dataset.noise[run.dataset.train_idx]
    expected = [f"X = {x:+d} ({int((noise == x).sum())} examples)" for x in xs]
    assert _legend_texts(fig.axes[1]) == expected


def test_save_figure_keeps_the_figure_open_unless_asked(tmp_path, tiny_an):
    _run, an = tiny_an
    fig = plotting.plot_spectrum_heatmap(an)
    plotting.save_figure(fig, tmp_path / "a.png")
    assert matplotlib.pyplot.fignum_exists(fig.number)
    again = plotting.plot_spectrum_heatmap(an)
    plotting.save_figure(again, tmp_path / "b.png", close=True)
    assert not matplotlib.pyplot.fignum_exists(again.number)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    matplotlib.pyplot.close(fig)


def test_readme_test_count_is_current():
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", str(ROOT / "tests")],
                         capture_output=True, text=True, cwd=ROOT).stdout
    n = int(re.search(r"(\d+) tests? collected", out).group(1))
    assert f"{n} tests in" in (ROOT / "README.md").read_text(), f"README should say {n} tests"


def test_plot_numerics_draws_each_runs_columns():
    """plot_numerics draws, per run, its clean test accuracy, both collapse fractions, its train loss and
    its gradient cosine, the points being the rows' own values (NaN rows left out)."""
    rows = [{"epoch": e, "test_acc_clean": g, "softmax_collapse_f32": c, "softmax_collapse_f64": c / 2,
             "train_loss": 10.0 ** -e, "grad_cos_all": cos}
            for e, g, c, cos in ((0, 0.01, 0.0, float("nan")), (1, 0.5, 0.25, 0.5), (2, 1.0, 0.5, 0.9))]
    fig = plotting.plot_numerics({"a": rows, "b": rows[:2]}, "t")
    acc, collapse, loss, cos = fig.axes
    assert [list(line.get_ydata()) for line in acc.get_lines()] == [[0.01, 0.5, 1.0], [0.01, 0.5]]
    assert [list(line.get_ydata()) for line in collapse.get_lines()][:2] == [[0.0, 0.25, 0.5], [0.0, 0.125, 0.25]]
    assert loss.get_yscale() == "log" and list(loss.get_lines()[0].get_ydata()) == [1.0, 0.1, 0.01]
    assert list(cos.get_lines()[0].get_xdata()) == [1.0, 2.0]  # the NaN at epoch 0 is left out
    assert fig._suptitle.get_text() == "t"


def test_plot_compare_grid_one_row_per_group_with_the_rows_values():
    """plot_compare_grid: a row of panels per group, one line per run per column, y values the rows'
    own, each group's heading on its row and the shared styles applied."""
    rows = [{"epoch": e, "g": g, "m": m} for e, g, m in ((0, 0.1, 0.9), (10, 0.4, 0.6), (100, 0.9, 0.1))]
    fig = plotting.plot_compare_grid({"A": {"x": rows, "y": rows[:2]}, "B": {"x": rows}}, [("g", "G"), ("m", "M")],
                                     "t", styles={"x": ("C3", "--"), "y": ("C4", "-")})
    assert len(fig.axes) == 4 and fig._suptitle.get_text() == "t"
    a_g, a_m, b_g, b_m = fig.axes
    assert [list(line.get_ydata()) for line in a_g.get_lines()] == [[0.1, 0.4, 0.9], [0.1, 0.4]]
    assert [list(line.get_ydata()) for line in b_m.get_lines()] == [[0.9, 0.6, 0.1]]
    assert a_g.get_lines()[0].get_linestyle() == "--" and a_g.get_lines()[1].get_color() == "C4"
    assert [sf._suptitle.get_text() for sf in fig.subfigs] == ["A", "B"]
    matplotlib.pyplot.close(fig)
