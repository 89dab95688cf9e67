import math

import numpy as np
import pytest

from unsplit_tf import _validation as check


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float32("nan"), "1", None, True])
def test_finite_refuses_what_is_no_real_number(bad):
    with pytest.raises(ValueError, match="must be a"):
        check.finite("lr", bad)


def test_ranges_accept_their_bounds_and_refuse_beyond():
    assert check.positive("lr", np.float32(1e-3)) == pytest.approx(1e-3)
    assert check.non_negative("tv", 0) == 0.0
    assert check.at_least("iters", np.int64(1), 1) == 1
    with pytest.raises(ValueError, match="positive"):
        check.positive("lr", 0.0)
    with pytest.raises(ValueError, match="0 or more"):
        check.non_negative("tv", -1e-9)
    with pytest.raises(ValueError, match="at least 1"):
        check.at_least("iters", 0, 1)
    with pytest.raises(ValueError, match="whole number"):
        check.at_least("iters", 2.5, 1)
