import keras
import numpy as np
import pytest
from keras import layers

from models_for_tests import residual_model

from unsplit_tf.models import cifar_net, mnist_net
from unsplit_tf.split import clone_architecture, split_model, split_u_shaped


def assert_split_exact(model, split, x):
    np.testing.assert_array_equal(split.server(split.client(x)).numpy(), model(x).numpy())


@pytest.mark.parametrize("depth", range(10))
def test_every_mnist_depth_splits_exactly(depth, rng):
    model = mnist_net()
    assert_split_exact(model, split_model(model, depth=depth), rng.random((4, 28, 28, 1), dtype=np.float32))


@pytest.mark.parametrize("depth", [1, 4, 8])
def test_cifar_depths_split_exactly(depth, rng):
    model = cifar_net()
    assert_split_exact(model, split_model(model, depth=depth), rng.random((2, 32, 32, 3), dtype=np.float32))


def test_cut_by_layer_name_and_depth_agree(rng):
    model = mnist_net()
    by_name, by_depth = split_model(model, layer="pool1"), split_model(model, depth=2)
    assert by_name.depth == 2 and by_depth.cut_layer == "pool1"
    x = rng.random((3, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(by_name.client(x).numpy(), by_depth.client(x).numpy())


def test_sub_models_share_the_originals_weights(rng):
    model = mnist_net()
    split = split_model(model, depth=2)
    x = rng.random((2, 28, 28, 1), dtype=np.float32)
    before = split.client(x).numpy()
    conv = model.get_layer("conv1")
    conv.kernel.assign(conv.kernel * 2.0)
    assert not np.allclose(split.client(x).numpy(), before)
    assert split.client.get_layer("conv1") is conv
    assert split.server.get_layer("logits") is model.get_layer("logits")


@pytest.mark.parametrize("cut", ["stem_relu", "block_add", "pool", "hidden_relu"])
def test_residual_model_splits_before_and_after_the_block(cut, rng):
    model = residual_model()
    assert_split_exact(model, split_model(model, layer=cut), rng.random((2, 8, 8, 2), dtype=np.float32))


@pytest.mark.parametrize("cut", ["block_conv", "block_relu"])
def test_cut_crossed_by_a_skip_connection_is_refused(cut):
    with pytest.raises(ValueError, match="skip connection crosses the cut.*'block_add'.*'stem_relu'"):
        split_model(residual_model(), layer=cut)


def test_depth_out_of_range_states_the_valid_range():
    with pytest.raises(ValueError, match=r"depth 10 is out of range.*valid depths are 0\.\.9"):
        split_model(mnist_net(), depth=10)
    with pytest.raises(ValueError, match="out of range"):
        split_model(mnist_net(), depth=-1)


def test_unknown_layer_lists_close_matches():
    with pytest.raises(ValueError, match="no layer named 'pool3'; did you mean 'pool2', 'pool1'"):
        split_model(mnist_net(), layer="pool3")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({}, "exactly one of"), ({"depth": 2, "layer": "pool1"}, "exactly one of"), ({"layer": "logits"}, "output layer"), ({"layer": "image"}, "input")],
)
def test_meaningless_cuts_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_model(mnist_net(), **kwargs)


def test_layer_with_several_outputs_is_refused():
    class TwoOutputs(layers.Layer):
        def call(self, x):
            return x, -x

        def compute_output_shape(self, shape):
            return shape, shape

    inputs = keras.Input((4,))
    a, b = TwoOutputs(name="fork")(inputs)
    model = keras.Model(inputs, layers.Dense(2)(layers.Add()([a, b])))
    with pytest.raises(ValueError, match="'fork' has 2 outputs"):
        split_model(model, layer="fork")


def test_layer_used_twice_is_refused():
    shared = layers.Dense(4, name="shared")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(2)(shared(shared(inputs))))
    with pytest.raises(ValueError, match="'shared' is used 2 times"):
        split_model(model, layer="shared")


def test_subclassed_model_is_refused_with_the_fix():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="subclassed.*functional API"):
        split_model(net, depth=0)


def test_sequential_model_simply_works(rng):
    model = keras.Sequential([keras.Input((6,)), layers.Dense(5), layers.ReLU(), layers.Dense(3)])
    split = split_model(model, depth=1)
    x = rng.random((3, 6), dtype=np.float32)
    np.testing.assert_array_equal(split.server(split.client(x)).numpy(), model(x).numpy())


def test_unbuilt_sequential_model_says_how_to_fix_it():
    with pytest.raises(ValueError, match="keras.Input"):
        split_model(keras.Sequential([layers.Dense(5), layers.Dense(3)]), depth=0)


def test_clone_has_the_clients_architecture_with_fresh_seeded_weights(rng):
    client = split_model(mnist_net(), depth=2).client
    clone, again, other = (clone_architecture(client, seed=s) for s in (7, 7, 8))
    assert [type(layer) for layer in clone.layers] == [type(layer) for layer in client.layers]
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in client.get_weights()]
    assert not any(c is o for c in clone.weights for o in client.weights)
    assert not np.allclose(clone.get_weights()[0], client.get_weights()[0])
    np.testing.assert_array_equal(clone.get_weights()[0], again.get_weights()[0])
    assert not np.allclose(clone.get_weights()[0], other.get_weights()[0])
    x = rng.random((2, 28, 28, 1), dtype=np.float32)
    assert clone(x).shape == client(x).shape


def test_clone_never_starts_at_a_victims_initial_weights():
    """A victim initialised with the attacker's seed must not hand over its initial weights."""
    keras.utils.set_random_seed(3)
    victim = split_model(mnist_net(), depth=2).client
    clone = clone_architecture(victim, seed=3)
    for victim_weights, clone_weights in zip(victim.get_weights(), clone.get_weights()):
        if victim_weights.any():  # biases start at zero in both
            assert not np.allclose(victim_weights, clone_weights)


def test_u_shaped_split_composes_to_the_model(rng):
    model = mnist_net()
    parts = split_u_shaped(model, depth=2)
    assert [layer.name for layer in parts.client_head.layers[1:]] == ["logits"]
    assert tuple(parts.server.output.shape[1:]) == (84,)
    x = rng.random((3, 28, 28, 1), dtype=np.float32)
    out = parts.client_head(parts.server(parts.client_bottom(x)))
    np.testing.assert_array_equal(out.numpy(), model(x).numpy())


def test_u_shaped_split_needs_a_server_part():
    with pytest.raises(ValueError, match=r"choose depth in 0\.\.8"):
        split_u_shaped(mnist_net(), depth=9)


def test_layer_applied_on_both_sides_of_the_cut_is_refused():
    shared = layers.Dense(4, name="shared")
    inputs = keras.Input((4,))
    x = layers.ReLU(name="first_relu")(shared(inputs))
    model = keras.Model(inputs, layers.Dense(2, name="out")(shared(x)))
    with pytest.raises(ValueError, match="layer 'shared' is applied on both sides of the cut after 'first_relu'"):
        split_model(model, layer="first_relu")


def test_weight_shared_by_a_client_and_a_server_layer_is_refused():
    class Tied(layers.Layer):
        """A dense layer that reuses another layer's kernel (weight tying)."""

        def __init__(self, source, **kwargs):
            super().__init__(**kwargs)
            self.source = source

        def call(self, x):
            return x @ self.source.kernel

    first = layers.Dense(4, use_bias=False, name="first")
    inputs = keras.Input((4,))
    x = layers.ReLU(name="cut_here")(first(inputs))
    model = keras.Model(inputs, layers.Dense(2, name="out")(Tied(first, name="tied")(x)))
    with pytest.raises(ValueError, match="shared by layer 'first' on the client and layer 'tied' on the server"):
        split_model(model, layer="cut_here")


@pytest.mark.parametrize(("call", "message"), [
    (lambda m: split_model(m, depth=True), "depth must be a whole number, got True"),
    (lambda m: split_model(m, depth=2.0), "depth must be a whole number, got 2.0"),
    (lambda m: split_model(m, layer=5), r"layer= takes a layer name \(a string\)"),
    (lambda m: split_u_shaped(m, depth=2, head_layers=100), r"choose head_layers in 1\.\.9"),
    (lambda m: split_u_shaped(m, depth=2, head_layers=1.5), "head_layers must be a whole number"),
    (lambda m: clone_architecture(m, seed=-1), "seed must be at least 0"),
])
def test_wrong_arguments_get_a_message_not_a_traceback(call, message):
    with pytest.raises(ValueError, match=message):
        call(mnist_net())


def test_numpy_integer_depth_is_a_depth():
    assert split_model(mnist_net(), depth=np.int64(2)).cut_layer == "pool1"
