import math

import pytest

from interp_grok.config import Config, ConfigError, checkpoint_schedule


def test_default_schedule_is_log_spaced_with_linear_floor():
    s = checkpoint_schedule(20_000, 100, 0.025)
    assert s[0] == 0 and s[-1] == 20_000
    assert s == sorted(set(s))
    assert 90 <= len(s) <= 100
    assert max(b - a for a, b in zip(s, s[1:])) <= 0.025 * 20_000
    # log spacing: the first decade of epochs is densely sampled
    assert set(range(0, 10)) <= set(s)
    assert sum(e <= 200 for e in s) > sum(e > 19_800 for e in s)


@pytest.mark.parametrize("epochs", [1, 5, 99, 100, 101, 1234, 50_000])
def test_schedule_properties(epochs):
    s = checkpoint_schedule(epochs, 100, 0.025)
    assert s[0] == 0 and s[-1] == epochs and s == sorted(set(s))
    assert max(b - a for a, b in zip(s, s[1:])) <= max(1, math.floor(0.025 * epochs))


def test_floor_wins_over_count():
    s = checkpoint_schedule(1000, 5, 0.1)
    assert max(b - a for a, b in zip(s, s[1:])) <= 100


def test_d_mlp_default_is_four_d_model():
    assert Config(d_model=32).finalize().d_mlp == 128
    assert Config().finalize().d_mlp == 512


def test_roundtrip_dict():
    c = Config(noise_n=8, betas=(0.8, 0.9)).finalize()
    assert Config.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    "kw, name",
    [({"p": 1}, "p"), ({"train_frac": 1.0}, "train_frac"), ({"train_frac": 0.0}, "train_frac"),
     ({"noise_n": -1}, "noise_n"), ({"p_bin": 1.5}, "p_bin"), ({"epochs": 0}, "epochs"),
     ({"act": "tanh"}, "act"), ({"lr": 0.0}, "lr"), ({"n_checkpoints": 1}, "checkpoints"),
     ({"eval_every": 0}, "eval_every"), ({"loss_dtype": "float16"}, "loss_dtype")],
)
def test_bad_settings_name_the_setting(kw, name):
    with pytest.raises(ConfigError, match=name):
        Config(**kw).finalize()
