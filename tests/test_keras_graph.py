"""Pins the Keras versions whose private graph attributes unsplit_tf/_keras_graph.py was checked on."""

import keras

from unsplit_tf import _keras_graph
from unsplit_tf.models import mnist_net


def test_keras_version_is_one_the_graph_module_was_checked_on():
    major, minor = (int(part) for part in keras.__version__.split(".")[:2])
    low, high = _keras_graph.TESTED_KERAS
    assert low <= (major, minor) <= high, (
        f"Keras {keras.__version__} is outside the range {low}..{high} that unsplit_tf/_keras_graph.py was checked on: "
        "re-check every private attribute it reads (run tests/test_split.py), then widen TESTED_KERAS"
    )


def test_graph_walk_reads_the_reference_net():
    model = mnist_net()
    assert _keras_graph.is_graph_model(model)
    logits = model.outputs[0]
    assert _keras_graph.producer(logits) is model.get_layer("logits")
    (parent,) = _keras_graph.parents(logits)
    assert _keras_graph.producer(parent) is model.get_layer("relu4")
    assert _keras_graph.parents(model.inputs[0]) == []
    (node,) = _keras_graph.nodes_in(model, model.get_layer("conv1"))
    (output,) = _keras_graph.node_outputs(node)
    assert tuple(output.shape[1:]) == (24, 24, 8)
