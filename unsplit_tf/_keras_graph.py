"""The one place that reads Keras' private graph attributes.

Keras 3 has no public API for walking a functional model's graph, so the cut
logic of `split.py` reads `_keras_history`, `_inbound_nodes`, `_operations` and
`_nodes_by_depth`. They are read here only; `TESTED_KERAS` names the Keras
versions this was checked on, and tests/test_keras_graph.py fails on any other
version with a request to re-check this module.
"""

from __future__ import annotations

import keras

# Inclusive (major, minor) range of Keras versions whose private graph attributes this module was checked on.
TESTED_KERAS = ((3, 3), (3, 15))


def is_graph_model(model: keras.Model) -> bool:
    """True if `model` has a functional layer graph (False for subclassed models)."""
    return hasattr(model, "_inbound_nodes") and bool(getattr(model, "_operations", None)) and bool(model.inputs)


def producer(tensor) -> keras.layers.Layer:
    """The layer (operation) whose call produced the symbolic `tensor`."""
    return tensor._keras_history.operation


def parents(tensor) -> list:
    """The symbolic tensors the call that produced `tensor` read (empty for a model input)."""
    operation, node_index, _ = tensor._keras_history
    return list(operation._inbound_nodes[node_index].input_tensors)


def nodes_in(model: keras.Model, layer: keras.layers.Layer) -> list:
    """The calls of `layer` inside `model`'s own graph (sub-models built from it add nodes to shared layers)."""
    return [node for level in model._nodes_by_depth.values() for node in level if node.operation is layer]


def node_outputs(node) -> list:
    """The symbolic tensors one call (node) produced."""
    return list(node.output_tensors)
