import math

import pytest

from interp_grok.noise import noise_floor, noise_pmf


@pytest.mark.parametrize(
    "n, p_zero, nll_clean, entropy",  # science.md section 6 table
    [(2, 0.500, 0.693, 1.040), (4, 0.375, 0.981, 1.408), (8, 0.273, 1.297, 1.764), (16, 0.196, 1.628, 2.112)],
)
def test_noise_floor_table(n, p_zero, nll_clean, entropy):
    f = noise_floor(n, 0.5, 97)
    assert f["p_zero"] == pytest.approx(p_zero, abs=5e-4)
    assert f["nll_clean"] == pytest.approx(nll_clean, abs=5e-4)
    assert f["entropy"] == pytest.approx(entropy, abs=5e-4)
    assert f["p_mode"] == f["p_zero"]  # symmetric noise: the mode is X = 0
    assert f["p_zero"] == pytest.approx(math.comb(n, n // 2) / 2**n)


def test_no_noise_and_folding():
    assert noise_floor(0, 0.5, 97) == {"entropy": 0.0, "p_zero": 1.0, "nll_clean": 0.0, "p_mode": 1.0}
    # n = 4 mod p = 3: X in {-2..2} folds onto residues; -2 = 1 and 2 = 2 mod 3
    pmf = noise_pmf(4, 0.5, 3)
    assert pmf.tolist() == pytest.approx([6 / 16 + 0, 4 / 16 + 1 / 16, 1 / 16 + 4 / 16])
    assert pmf.sum().item() == pytest.approx(1.0)


def test_noise_pmf_of_a_large_n_is_exact_to_rounding():
    """Past EXACT_BINOMIAL_N the binomial coefficient overflows a float (`--noise 2000` once ended
    in an OverflowError): the log-space terms match exact rational arithmetic, and the pmf stays a
    distribution for q = 0, 1/2, 1 and a skewed q."""
    from fractions import Fraction

    from interp_grok.noise import EXACT_BINOMIAL_N, _log_space_binomial_pmf

    n = 2000
    assert n > EXACT_BINOMIAL_N
    for q in (Fraction(1, 2), Fraction(1, 5)):
        got = _log_space_binomial_pmf(n, float(q))
        for j in (0, 1, 400, 1000, 1999, 2000):
            exact = float(Fraction(math.comb(n, j)) * q**j * (1 - q) ** (n - j))
            assert got[j].item() == pytest.approx(exact, rel=1e-11, abs=1e-300)
    for q in (0.0, 0.5, 1.0, 0.2):
        pmf = noise_pmf(n, q, 97)
        assert pmf.sum().item() == pytest.approx(1.0, abs=1e-14) and (pmf >= 0).all()
    assert noise_pmf(n, 0.0, 97)[(-(n // 2)) % 97].item() == 1.0  # X = -n/2 surely
    # near the centre the folded pmf of a wide binomial is nearly flat: p_zero -> 1/p
    assert noise_floor(100_000, 0.5, 97)["p_zero"] == pytest.approx(1 / 97, rel=1e-6)
