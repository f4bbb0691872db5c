import math

import torch

from interp_grok.config import Config
from interp_grok.models.mlp import (
    PARAM_NAMES,
    SimpleMLP,
    cross_entropy,
    grid_logits,
    mlp_logits,
    param_shapes,
)


def _params(p=7, d=4, d_mlp=12, seed=0, dtype=torch.float64):
    c = Config(p=p, d_model=d, d_mlp=d_mlp).finalize()
    m = SimpleMLP.from_config(c, torch.Generator().manual_seed(seed))
    params = {k: v.detach().to(dtype) for k, v in m.params().items()}
    params["b_in"] = torch.randn(d_mlp, dtype=dtype, generator=torch.Generator().manual_seed(1))
    return params


def _concat_forward(P, a, b, act=torch.relu):
    """The seed notebook's form: concatenate the two embeddings, then one hidden layer."""
    x = torch.cat([P["W_E"][a], P["W_E"][b]], dim=1)
    return act(x @ P["W_in"] + P["b_in"]) @ P["W_out"] @ P["W_U"]


def test_param_names_and_shapes():
    c = Config().finalize()
    m = SimpleMLP.from_config(c)
    assert tuple(n for n, _ in m.named_parameters()) == PARAM_NAMES
    assert {n: tuple(v.shape) for n, v in m.named_parameters()} == {
        "W_E": (97, 128), "W_in": (256, 512), "b_in": (512,), "W_out": (512, 128), "W_U": (128, 97)}
    assert param_shapes(97, 128, 512)["W_in"] == (256, 512)


def test_factored_first_layer_equals_concat():
    P = _params()
    a, b = torch.arange(7).repeat_interleave(7), torch.arange(7).repeat(7)
    for act in ("relu", "gelu"):
        f = torch.relu if act == "relu" else torch.nn.functional.gelu
        torch.testing.assert_close(mlp_logits(P, a, b, act), _concat_forward(P, a, b, f))
        torch.testing.assert_close(grid_logits(P, act).reshape(49, 7), _concat_forward(P, a, b, f))


def test_hand_written_backward_matches_autograd():
    P = {k: v.requires_grad_(True) for k, v in _params().items()}
    a = torch.tensor([0, 1, 2, 3, 6, 6, 5])
    b = torch.tensor([1, 1, 0, 6, 2, 6, 4])
    # gradcheck: the custom backward against finite differences, in float64
    assert torch.autograd.gradcheck(lambda *ws: mlp_logits(dict(zip(PARAM_NAMES, ws)), a, b),
                                    tuple(P[n] for n in PARAM_NAMES))
    y = torch.tensor([1, 2, 3, 4, 5, 6, 0])
    g1 = torch.autograd.grad(cross_entropy(mlp_logits(P, a, b), y), list(P.values()))
    g2 = torch.autograd.grad(cross_entropy(_concat_forward(P, a, b), y), list(P.values()))
    for x, z in zip(g1, g2):
        torch.testing.assert_close(x, z)


def test_loss_is_float64_and_survives_where_float32_collapses():
    logits = torch.tensor([[30.0, 0.0]])
    y = torch.tensor([0])
    exact = math.log1p(math.exp(-30.0))
    l64 = cross_entropy(logits, y)
    assert l64.dtype == torch.float64
    assert math.isclose(l64.item(), exact, rel_tol=1e-2)  # 1 + 9e-14 keeps ~3 digits in float64
    assert cross_entropy(logits, y, torch.float32).item() == 0.0  # float32 rounds it away


def test_init_is_seeded():
    c = Config(p=7, d_model=4).finalize()
    m1, m2 = SimpleMLP.from_config(c), SimpleMLP.from_config(c)
    assert all(torch.equal(x, y) for x, y in zip(m1.parameters(), m2.parameters()))
    m3 = SimpleMLP.from_config(Config(p=7, d_model=4, seed=1).finalize())
    assert not torch.equal(m1.W_E, m3.W_E)
    assert torch.equal(m1.b_in, torch.zeros(16))


def test_cross_entropy_backward_matches_autograd():
    logits = torch.randn(9, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 1])
    assert torch.autograd.gradcheck(lambda z: cross_entropy(z, y), (logits,))
    ref = torch.nn.functional.cross_entropy(logits, y)
    torch.testing.assert_close(cross_entropy(logits, y), ref)
    g32 = torch.autograd.grad(cross_entropy(logits.float(), y), logits)[0]
    torch.testing.assert_close(g32, torch.autograd.grad(ref, logits)[0], rtol=1e-5, atol=1e-7)


def test_ablate_neurons_silences_exactly_those_neurons():
    from interp_grok.models.mlp import ablate_neurons, grid_hidden

    P = _params(p=7, d=4, d_mlp=12, dtype=torch.float32)
    W_out = P["W_out"].clone()
    keep = torch.zeros(12, dtype=torch.bool)
    keep[[2, 5]] = True
    h = grid_hidden(P)  # [p, p, d_mlp]
    expected = h[..., keep] @ (P["W_out"][keep] @ P["W_U"])
    torch.testing.assert_close(grid_logits(ablate_neurons(P, keep)), expected)
    assert torch.equal(ablate_neurons(P, torch.ones(12, dtype=torch.bool))["W_out"], P["W_out"])
    assert torch.equal(P["W_out"], W_out)  # the input is not modified
