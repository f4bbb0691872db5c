"""A kill at every moment of a run's write sequence, at one and at two threads: whatever the kill
leaves, `train` (nothing of the run on disk yet) or `train --resume` finishes it, and the result
is bit-identical to an uninterrupted run at the same thread count.

A SIGKILL's effect on disk is exactly "the writes done so far": every file but metrics.jsonl is
written atomically and metrics.jsonl is appended and flushed. So the kill is simulated in-process,
just before the k-th write (or halfway through the k-th metrics append), for every k; a real
SIGKILL is tested in test_train.py and below at two threads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from interp_grok import Config, resume, rundir, train


class Killed(BaseException):
    """Raised where the simulated kill lands (BaseException: no handler in the code catches it)."""


def cfg() -> Config:
    return Config(p=11, d_model=16, epochs=12, n_checkpoints=4, max_checkpoint_gap=0.5, eval_every=4)


def final_state(out):
    return rundir.load_tensors(out / rundir.TRAIN_STATE)[0], rundir.read_metrics(out), {
        e: rundir.checkpoint_path(out, e).read_bytes() for e in rundir.checkpoint_epochs_on_disk(out)}


def _patch_writes(monkeypatch, kill_at: int | None, partial: bool) -> list[str]:
    """Count every write of the run; raise Killed just before write number kill_at."""
    calls: list[str] = []
    real_atomic, real_append = rundir.atomic_write_bytes, rundir.MetricsWriter.write

    def atomic(path, data):
        calls.append(str(path))
        if len(calls) == kill_at:
            raise Killed
        real_atomic(path, data)

    def append(self, records):
        calls.append("metrics append")
        if len(calls) == kill_at:
            if partial:  # a kill in the middle of an append: half a line reaches the file
                text = rundir._jsonl(records)
                self._f.write(text[: len(text) // 2])
                self._f.flush()
            raise Killed
        real_append(self, records)

    monkeypatch.setattr(rundir, "atomic_write_bytes", atomic)
    monkeypatch.setattr(rundir.MetricsWriter, "write", append)
    return calls


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    before = torch.get_num_threads()
    yield request.param
    torch.set_num_threads(before)


def test_every_kill_point_resumes_bit_identically(tmp_path, monkeypatch, threads):
    ref = tmp_path / "ref"
    with monkeypatch.context() as m:
        calls = _patch_writes(m, None, False)
        train(cfg(), ref, device="cpu", threads=threads)
        n_writes = len(calls)
    expected = final_state(ref)
    assert n_writes > 12  # config, dataset, then per checkpoint: metrics, checkpoint, state
    for k in range(1, n_writes + 1):
        for partial in (False, True):
            out = tmp_path / f"k{k}{'p' if partial else ''}"
            with monkeypatch.context() as m:
                calls = _patch_writes(m, k, partial)
                with pytest.raises(Killed):
                    train(cfg(), out, device="cpu", threads=threads)
                if partial and not calls[-1] == "metrics append":
                    continue  # the partial variant only differs from the plain one at an append
            if rundir.is_run_dir(out):
                resume(out, device="cpu", threads=threads)
            else:
                train(cfg(), out, device="cpu", threads=threads)
            state, metrics, ckpts = final_state(out)
            assert metrics == expected[1], f"kill before write {k} ({calls[-1]})"
            assert ckpts == expected[2], f"kill before write {k} ({calls[-1]})"
            for key, t in expected[0].items():
                assert torch.equal(state[key], t), f"kill before write {k} ({calls[-1]}): {key}"


def test_real_sigkill_at_two_threads(tmp_path):
    """A real SIGKILL mid-run at two threads, resumed (at the thread count the run records)."""
    args = ["--p", "23", "--d-model", "32", "--epochs", "200", "--eval-every", "10", "--threads", "2"]
    ref, out = tmp_path / "ref", tmp_path / "killed"
    cli = [sys.executable, "-m", "interp_grok.cli", "train"]
    assert subprocess.run([*cli, *args, "--out", str(ref)], capture_output=True).returncode == 0
    proc = subprocess.Popen([*cli, *args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if rundir.read_train_state(out)[0] >= 80:
                break
        except rundir.RunDirError:
            pass
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert rundir.read_train_state(out)[0] < 200
    done = subprocess.run([*cli, "--resume", "--out", str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr
    a, b = final_state(out), final_state(ref)
    assert a[1] == b[1] and a[2] == b[2]
    assert all(torch.equal(a[0][k], b[0][k]) for k in b[0])


def test_a_checkpoint_written_after_the_state_is_dropped_when_the_run_is_shortened(tmp_path, monkeypatch):
    """Killed between the checkpoint at 6 and its state, then resumed to 4 epochs: the checkpoint
    at 6 (beyond the new end) must not stay behind; the run can be extended again afterwards."""
    out = tmp_path / "short"
    with monkeypatch.context() as m:
        calls = _patch_writes(m, None, False)
        real = rundir.atomic_write_bytes

        def kill_at_state_6(path, data):
            if str(path).endswith(rundir.TRAIN_STATE) and rundir.checkpoint_path(out, 6).exists():
                raise Killed
            real(path, data)

        m.setattr(rundir, "atomic_write_bytes", kill_at_state_6)
        with pytest.raises(Killed):
            train(cfg(), out, device="cpu", threads=1)
    del calls
    assert rundir.read_train_state(out)[0] == 1 and 6 in rundir.checkpoint_epochs_on_disk(out)
    resume(out, epochs=4, device="cpu", threads=1)
    assert rundir.checkpoint_epochs_on_disk(out) == rundir.load_run(out).config.checkpoint_epochs
    assert max(rundir.checkpoint_epochs_on_disk(out)) == 4
    resume(out, epochs=12, device="cpu", threads=1)
    assert rundir.read_train_state(out)[0] == 12
