"""conformal.quantile: the one finite-sample rank, exact for every float alpha (fast path included)."""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformal.quantile import conformal_quantile, conformal_rank, min_calibration_size, sorted_quantile
from tests.reference import online as twin_online


def exact_rank(n, alpha):
    return math.ceil((n + 1) * (1 - Fraction(repr(float(alpha)))))


@settings(max_examples=400, deadline=None)
@given(n=st.integers(0, 10 ** 7), alpha=st.floats(-0.5, 1.5, allow_nan=False))
def test_rank_equals_the_rational_definition(n, alpha):
    assert conformal_rank(n, alpha) == exact_rank(n, alpha)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 10 ** 6), data=st.data())
def test_rank_is_exact_next_to_integers(n, data):
    """alpha whose (n + 1)(1 - alpha) is (within rounding of) an integer: where float arithmetic goes wrong."""
    m = data.draw(st.integers(0, n + 1))
    alpha = 1.0 - m / (n + 1)
    for a in (alpha, np.nextafter(alpha, 0.0), np.nextafter(alpha, 1.0), float(repr(round(alpha, 6)))):
        assert conformal_rank(n, float(a)) == exact_rank(n, a), (n, m, a)


def test_known_values():
    assert conformal_rank(9, 0.1) == 9  # 10 * 0.9 = 9.000000000000002 in floats
    assert conformal_rank(19, 0.05) == 19 and conformal_rank(99, 0.05) == 95
    assert conformal_rank(10, 1.0) == 0 and conformal_rank(10, 0.0) == 11
    assert min_calibration_size(0.1) == 9 and min_calibration_size(0.05) == 19


@settings(max_examples=200, deadline=None)
@given(scores=st.lists(st.floats(-10, 10), min_size=1, max_size=60), alpha=st.floats(-0.2, 1.2))
def test_sorted_quantile_matches_the_definition(scores, alpha):
    s = np.sort(np.asarray(scores))
    assert sorted_quantile(s, alpha) == twin_online.aci_threshold(s, alpha)


def test_conformal_quantile_checks_its_inputs():
    with pytest.raises(ValueError, match="`alpha`"):
        conformal_quantile(np.arange(5.0), 1.0)
    with pytest.raises(TypeError, match="float array"):
        conformal_quantile(np.arange(5), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        conformal_quantile(np.array([1.0, np.nan]), 0.1)
    assert conformal_quantile(np.arange(1.0, 9.0), 0.1) == math.inf
