"""conformal.utils: the one softmax and the one rng coercion."""
import numpy as np
import pytest

from conformal.utils import check_random_state, softmax
from tests.reference import naive


def test_softmax_is_the_row_definition_in_float64():
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(50, 9)) * 5).astype(np.float32)
    z0 = z.copy()
    out = softmax(z, temperature=2.0)
    assert out.dtype == np.float64 and out.shape == z.shape
    np.testing.assert_array_equal(z, z0)  # input untouched
    want = np.array([naive.softmax_row(r.astype(np.float64) / 2.0) for r in z])
    np.testing.assert_allclose(out, want, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-14)
    big = softmax(np.array([[1000.0, 0.0, -1000.0]]))  # no overflow: the max is subtracted
    assert np.isfinite(big).all() and big[0, 0] == 1.0


def test_adapters_use_the_same_softmax():
    pytest.importorskip("torch")
    from adapters import _base
    assert _base.softmax is softmax


def test_check_random_state():
    g = np.random.default_rng(1)
    assert check_random_state(g) is g
    assert check_random_state(7).random() == check_random_state(np.int64(7)).random()
    assert isinstance(check_random_state(None), np.random.Generator)
    with pytest.raises(TypeError, match="RandomState"):
        check_random_state(np.random.RandomState(0))
    with pytest.raises(TypeError, match="bool"):
        check_random_state(True)
    with pytest.raises(ValueError, match="non-negative"):
        check_random_state(-1)
    with pytest.raises(TypeError, match="`seed`.*str"):
        check_random_state("0", name="seed")
