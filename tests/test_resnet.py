import numpy as np
import pytest

from unsplit_tf.models import block_output, resnet20
from unsplit_tf.split import split_model


@pytest.fixture(scope="module")
def model():
    return resnet20()


def test_resnet20_has_about_0_27m_parameters(model):
    assert 0.26e6 < model.count_params() < 0.28e6
    assert model.output.shape[1:] == (10,)


@pytest.mark.parametrize("block, grid", [(0, (32, 32, 16)), (3, (32, 32, 16)), (4, (16, 16, 32)), (9, (8, 8, 64))])
def test_cuts_between_blocks_split_exactly(model, block, grid, rng):
    split = split_model(model, layer=block_output(model, block))
    assert tuple(split.client.output.shape[1:]) == grid
    x = rng.random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(split.server(split.client(x)), model(x), atol=1e-5)


def test_cuts_inside_a_block_and_bad_blocks_are_refused(model):
    with pytest.raises(ValueError, match="skip connection crosses the cut"):
        split_model(model, layer="block2_relu1")
    with pytest.raises(ValueError, match="block must be 0"):
        block_output(model, 10)
