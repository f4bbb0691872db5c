"""Batched training: K runs of one shape as one stacked model (train_batch / resume_batch,
`interp-grok sweep --batch`), each equal to the same run trained alone."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli
from test_kill_points import Killed, _patch_writes, final_state

from interp_grok import Config, TrainError, resume_batch, rundir, train, train_batch

# default p; d_model 64 keeps it quick. Three runs share the training-set size, one does not.
BASE = dict(p=97, d_model=64, epochs=200, eval_every=20, n_checkpoints=20)
CONFIGS = [dict(noise_n=4, seed=0), dict(noise_n=0, seed=1, weight_decay=3.0, lr=3e-3),
           dict(noise_n=8, seed=2, data_seed=5, init="torch_default", init_scale=0.5),
           dict(noise_n=4, seed=3, train_frac=0.5)]


@pytest.fixture(scope="module")
def batch_and_solo(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    torch.set_num_threads(1)
    configs = [Config(**BASE, **c) for c in CONFIGS]
    results = train_batch(configs, [d / f"b{k}" for k in range(4)], device="cpu", threads=1)
    for k, c in enumerate(CONFIGS):
        train(Config(**BASE, **c), d / f"s{k}", device="cpu", threads=1)
    return d, results


def test_batched_runs_equal_solo_runs(batch_and_solo):
    """Same training-set size: bit-identical (bmm over the model axis gives, slice for slice, the
    bits of the unbatched products). Another size: the shorter sets are padded, which changes how
    the gemm over examples blocks its sums, so the last bits differ and training amplifies them
    (each Adam step moves a weight by about lr at most, so any difference can grow to lr x epochs);
    the weights are checked against that bound, each run's lr x epochs (measured: under 0.01 on the
    AMD EPYC VM of 2026-12-04; 0.071 and 0.25 (lr 3e-3: bound 0.6) on the Intel Xeon VM of
    2026-12-07), and the full-grid accuracies agree to 2e-3 (measured: under 1e-3 on the AMD VM;
    1.06e-3, three training examples of 2 822, on the Intel VM, where the same test at the commit
    before that session's changes gave the same numbers)."""
    d, results = batch_and_solo
    assert all(r.error is None for r in results)
    sizes = [len(rundir.load_run(d / f"b{k}").dataset.train_idx) for k in range(4)]
    for k in range(4):
        a, b = final_state(d / f"b{k}"), final_state(d / f"s{k}")
        ea = [r for r in a[1] if r["kind"] == "eval"][-1]
        eb = [r for r in b[1] if r["kind"] == "eval"][-1]
        for key in ("train_acc", "test_acc_clean", "test_acc_noisy", "train_noisy_memorized_frac"):
            if eb[key] is not None:
                assert ea[key] == pytest.approx(eb[key], abs=2e-3 if sizes[k] != max(sizes) else 0), (k, key)
        if sizes[k] == max(sizes):  # no padding: the same bits
            assert all(torch.equal(a[0][n], b[0][n]) for n in b[0]), k
            assert a[1] == b[1] and a[2] == b[2]
        else:
            bound = CONFIGS[k].get("lr", 1e-3) * BASE["epochs"]  # lr x epochs
            assert max((a[0][n] - b[0][n]).abs().max().item() for n in b[0]) < bound, k


def test_each_batched_run_is_an_ordinary_run_naming_its_batch(batch_and_solo):
    d, _ = batch_and_solo
    run = rundir.load_run(d / "b2")
    assert (run.config.noise_n, run.config.init, run.config.init_scale) == (8, "torch_default", 0.5)
    assert run.provenance["batch"]["size"] == 4 and str(d / "b0") in run.provenance["batch"]["runs"]
    assert run_cli("analyze", run.path, "--no-figures") == 0


def test_runs_of_different_shapes_are_refused(tmp_path):
    with pytest.raises(TrainError, match="they differ on d_model"):
        train_batch([Config(p=11, d_model=16, epochs=5), Config(p=11, d_model=8, epochs=5)],
                    [tmp_path / "a", tmp_path / "b"], device="cpu")
    assert not (tmp_path / "a").exists()


def test_a_diverging_run_stops_alone(tmp_path):
    small = dict(p=11, d_model=16, epochs=40, eval_every=5, n_checkpoints=8)
    res = train_batch([Config(**small, lr=1e30), Config(**small)], [tmp_path / "bad", tmp_path / "ok"],
                      device="cpu", threads=1)
    assert "training diverged" in res[0].error and res[1].error is None
    assert rundir.read_train_state(tmp_path / "ok")[0] == 40
    assert rundir.read_train_state(tmp_path / "bad")[0] < 40


def small_batch():
    c = dict(p=11, d_model=16, epochs=12, n_checkpoints=4, max_checkpoint_gap=0.5, eval_every=4)
    return [Config(**c, noise_n=4, seed=0), Config(**c, noise_n=2, seed=1, weight_decay=2.0)]


def test_a_killed_batch_resumes_exactly(tmp_path, monkeypatch):
    """A kill before every write of a batch of two (equal training sets), then resume_batch (or a
    fresh train_batch when nothing of a run exists yet): bit-identical to the uninterrupted batch.
    A kill between the two runs' train states leaves them at different epochs; the one behind
    is brought up first."""
    ref = [tmp_path / "ref0", tmp_path / "ref1"]
    with monkeypatch.context() as m:
        calls = _patch_writes(m, None, False)
        train_batch(small_batch(), ref, device="cpu", threads=1)
        n_writes = len(calls)
    expected = [final_state(r) for r in ref]
    for k in range(1, n_writes + 1):
        outs = [tmp_path / f"k{k}a", tmp_path / f"k{k}b"]
        with monkeypatch.context() as m:
            calls = _patch_writes(m, k, False)
            with pytest.raises(Killed):
                train_batch(small_batch(), outs, device="cpu", threads=1)
        if all(rundir.is_run_dir(o) for o in outs):
            resume_batch(outs, device="cpu", threads=1)
        else:  # killed while creating the runs: the same command again, over what exists
            for o in outs:
                if rundir.is_run_dir(o):
                    resume_batch([o], device="cpu", threads=1)
                    continue
            train_batch(small_batch(), outs, device="cpu", threads=1, overwrite=True)
        for o, exp in zip(outs, expected):
            state, metrics, ckpts = final_state(o)
            assert metrics == exp[1] and ckpts == exp[2], f"kill before write {k} ({calls[-1]})"
            assert all(torch.equal(state[n], exp[0][n]) for n in exp[0]), f"kill before write {k}"


def test_sweep_batch_gives_the_same_runs(tmp_path, capsys):
    grid = ["--p", "11", "--d-model", "16", "--epochs", "40", "--eval-every", "10", "--checkpoints", "8",
            "--noise", "0,4", "--seed", "0,1"]
    assert run_cli("sweep", tmp_path / "solo", *grid, "--workers", "1") == 0
    assert run_cli("sweep", tmp_path / "batched", *grid, "--workers", "1", "--batch", "4") == 0
    for name in ("n0_s0", "n0_s1", "n4_s0", "n4_s1"):
        a = final_state(tmp_path / "solo" / "runs" / name)
        b = final_state(tmp_path / "batched" / "runs" / name)
        assert a[1] == b[1] and all(torch.equal(a[0][n], b[0][n]) for n in a[0]), name
    assert run_cli("sweep", tmp_path / "batched", "--batch", "4") == 0
    assert "0 trained now, 4 already done" in capsys.readouterr().out
