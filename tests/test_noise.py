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
