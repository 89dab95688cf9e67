"""Cut a Keras functional model into client and server sub-models.

Depth follows the authors' code: every layer that computes (conv, activation,
pooling, dense, ...) counts, 0-based, in the model's topological order; layers
that only reshape or are inactive at inference (`STRUCTURAL_LAYERS`) do not.
"Split depth k" puts counted layers 0..k on the client. The sub-models reuse
the original's layer objects, so they share its weights and
`server(client(x)) == model(x)` exactly.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from unsplit_tf import _keras_graph
from unsplit_tf._validation import at_least
from unsplit_tf._keras_graph import nodes_in

# Layers that move or drop values without computing a feature: they do not count towards depth.
STRUCTURAL_LAYERS = (layers.InputLayer, layers.Flatten, layers.Reshape, layers.Permute, layers.Dropout)


@dataclass(frozen=True)
class Split:
    """A model cut in two: the client computes `cut_layer` and everything before it."""

    client: keras.Model
    server: keras.Model
    cut_layer: str
    depth: int


@dataclass(frozen=True)
class UShapedSplit:
    """A model cut in three for label inference: the client keeps the input layers and the head."""

    client_bottom: keras.Model
    server: keras.Model
    client_head: keras.Model


def as_functional(model: keras.Model) -> keras.Model:
    """Return `model` as a functional graph of its own layers (weights shared).

    Sequential models are rebuilt as functional ones; subclassed models have no
    layer graph to cut and are refused.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"expected a keras.Model, got {type(model).__name__}")
    if isinstance(model, keras.Sequential):
        if not model.built or not model.inputs:
            raise ValueError(
                "this Sequential model has no input shape yet; start it with keras.Input(shape=...) "
                "or call model.build(input_shape) before splitting"
            )
        inputs = keras.Input(shape=model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
        x = inputs
        for layer in model.layers:
            x = layer(x)
        return keras.Model(inputs, x, name=model.name)
    if not _keras_graph.is_graph_model(model):
        raise ValueError(
            f"model '{model.name}' is a subclassed keras.Model: its layers form no graph that can be cut. "
            "Rebuild it with the functional API (keras.Input ... keras.Model(inputs, outputs)) or keras.Sequential"
        )
    return model


def counted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers that count towards depth, in topological order."""
    return [layer for layer in as_functional(model).layers if not isinstance(layer, STRUCTURAL_LAYERS)]


def split_model(model: keras.Model, *, depth: int | None = None, layer: str | None = None) -> Split:
    """Cut `model` after counted layer `depth`, or after the layer named `layer`.

    Raises ValueError when the cut is impossible: depth out of range, unknown
    layer, a layer with several outputs or uses, a skip connection that
    crosses the cut (the server would need a second tensor from the client),
    or a layer or weight used on both sides (both parties would train it).
    """
    model = as_functional(model)
    cut = _cut_layer(model, depth=depth, layer=layer)
    cut_tensor = _single_output(model, cut)
    _check_separates(model, cut_tensor, cut.name)
    client = keras.Model(model.input, cut_tensor, name=f"{model.name}_client")
    server = keras.Model(cut_tensor, model.output, name=f"{model.name}_server")
    _check_nothing_shared(client, server, cut.name)
    return Split(client=client, server=server, cut_layer=cut.name, depth=_depth_of(model, cut))


def split_u_shaped(model: keras.Model, *, depth: int, head_layers: int = 1) -> UShapedSplit:
    """Cut `model` after `depth` and before its last `head_layers` counted layers.

    The client runs the bottom (input side) and the head (output layer, where
    the labels are); the server runs what lies between.
    """
    model = as_functional(model)
    counted = counted_layers(model)
    head_layers = at_least("head_layers", head_layers, 1)
    depth = at_least("depth", depth, 0)
    head_start = len(counted) - head_layers  # index of the first head layer
    if head_start < 2:
        raise ValueError(
            f"a head of {head_layers} layer(s) leaves no room for a bottom and a server part in model '{model.name}' "
            f"({len(counted)} counted layers): choose head_layers in 1..{len(counted) - 2}"
        )
    if not depth < head_start - 1:
        raise ValueError(
            f"depth {depth} leaves no layer for the server in model '{model.name}' with a head of "
            f"{head_layers} layer(s): choose depth in 0..{head_start - 2}"
        )
    bottom = split_model(model, depth=depth)
    top = split_model(model, depth=head_start - 1)
    bottom_tensor = _single_output(model, model.get_layer(bottom.cut_layer))
    top_tensor = _single_output(model, model.get_layer(top.cut_layer))
    server = keras.Model(bottom_tensor, top_tensor, name=f"{model.name}_server")
    if not server.trainable_weights:
        trainable = [d for d in range(head_start - 1) if any(layer.trainable_weights for layer in counted[d + 1 : head_start])]
        raise ValueError(
            f"depth {depth} leaves the server only layers without weights ({', '.join(l.name for l in counted[depth + 1 : head_start])}) "
            f"in model '{model.name}': it would train nothing; choose depth in 0..{max(trainable)}"
        )
    return UShapedSplit(client_bottom=bottom.client, server=server, client_head=top.server)


def clone_architecture(model: keras.Model, *, seed: int = 0) -> keras.Model:
    """A copy of `model`'s architecture with fresh random weights: the attacker's starting point.

    The same seed gives the same weights. They come from a random stream derived
    from `seed`, not the one `keras.utils.set_random_seed(seed)` starts: a victim
    initialised with that same seed would otherwise hand the attacker its initial
    weights, knowledge no real server has. Seeds Keras' global random state.
    """
    keras.utils.set_random_seed(attacker_seed(at_least("seed", seed, 0)))
    clone = keras.models.clone_model(as_functional(model))
    clone.name = f"{model.name}_clone"
    return clone


def attacker_seed(seed: int) -> int:
    """The global seed a clone is drawn with: a stream of its own, independent of `seed`'s."""
    return int(np.random.SeedSequence([seed, _ATTACKER_STREAM]).generate_state(1)[0] % 2**31)


_ATTACKER_STREAM = 0xA77AC4


def _cut_layer(model: keras.Model, *, depth: int | None, layer: str | None) -> keras.layers.Layer:
    if (depth is None) == (layer is None):
        raise ValueError("give exactly one of depth= or layer= to say where to cut")
    if layer is not None:
        if not isinstance(layer, str):
            raise ValueError(f"layer= takes a layer name (a string), got {layer!r}; use depth= for a number")
        cut = find_layer(model, layer)
        if isinstance(cut, layers.InputLayer):
            raise ValueError(f"layer '{layer}' is the model's input: cutting there leaves nothing for the client")
        if cut is model.layers[-1] or any(cut is _keras_graph.producer(out) for out in model.outputs):
            raise ValueError(f"layer '{layer}' is an output layer: cutting there leaves nothing for the server")
        return cut
    counted = counted_layers(model)
    if not isinstance(depth, int) or isinstance(depth, bool):
        depth = at_least("depth", depth, 0)  # numpy integers pass; True, 2.0 and "2" get a message
    if not 0 <= depth <= len(counted) - 2:
        raise ValueError(
            f"depth {depth} is out of range for model '{model.name}': valid depths are 0..{len(counted) - 2} "
            f"(0 cuts after '{counted[0].name}', {len(counted) - 2} after '{counted[-2].name}'; "
            "the last layer must stay on the server)"
        )
    return counted[depth]


def find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """The layer called `name`; ValueError with close matches and the full list if there is none."""
    names = [candidate.name for candidate in model.layers]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
        raise ValueError(f"model '{model.name}' has no layer named '{name}'{hint} Its layers: {', '.join(names)}")
    return model.get_layer(name)


def _single_output(model: keras.Model, layer: keras.layers.Layer):
    nodes = nodes_in(model, layer)
    if len(nodes) != 1:
        raise ValueError(
            f"layer '{layer.name}' is used {len(nodes)} times in the model, so a cut there is ambiguous; cut at another layer"
        )
    outputs = _keras_graph.node_outputs(nodes[0])
    if len(outputs) != 1:
        raise ValueError(
            f"layer '{layer.name}' has {len(outputs)} outputs; a cut must be a single tensor, so cut at another layer"
        )
    return outputs[0]


def _depth_of(model: keras.Model, cut: keras.layers.Layer) -> int:
    """Depth of a cut after `cut`: the index of the last counted layer at or before it."""
    order = model.layers
    position = next(i for i, candidate in enumerate(order) if candidate is cut)
    return sum(1 for candidate in order[: position + 1] if not isinstance(candidate, STRUCTURAL_LAYERS)) - 1


def _check_nothing_shared(client: keras.Model, server: keras.Model, cut_name: str) -> None:
    """Raise if a layer or a weight belongs to both parts: client and server would both train it."""
    client_layers = {id(layer) for layer in client.layers if not isinstance(layer, layers.InputLayer)}
    for layer in server.layers:
        if id(layer) in client_layers:
            raise ValueError(
                f"layer '{layer.name}' is applied on both sides of the cut after '{cut_name}': client and server "
                "would train the same weights. Cut before its first use or after its last use"
            )
    client_weights = {id(weight): layer.name for layer in client.layers for weight in layer.weights}
    for layer in server.layers:
        for weight in layer.weights:
            if id(weight) in client_weights:
                raise ValueError(
                    f"weight '{weight.path}' is shared by layer '{client_weights[id(weight)]}' on the client and "
                    f"layer '{layer.name}' on the server (cut after '{cut_name}'): both parties would train it. "
                    "Cut where no weight is used on both sides"
                )


def _check_separates(model: keras.Model, cut_tensor, cut_name: str) -> None:
    """Raise unless every path from the inputs to the outputs passes through `cut_tensor`."""
    client_side = set()
    stack = [cut_tensor]
    while stack:
        tensor = stack.pop()
        if id(tensor) not in client_side:
            client_side.add(id(tensor))
            stack.extend(_keras_graph.parents(tensor))
    seen, reaches_cut = set(), False
    stack = list(model.outputs)
    while stack:
        tensor = stack.pop()
        if tensor is cut_tensor:
            reaches_cut = True
            continue
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        consumer = _keras_graph.producer(tensor)
        parents = _keras_graph.parents(tensor)
        if not parents:
            raise ValueError(
                f"the server would need the model input '{consumer.name}' directly, besides the cut after "
                f"'{cut_name}'; a cut must be the only tensor the server receives"
            )
        for parent in parents:
            if id(parent) in client_side and parent is not cut_tensor:
                raise ValueError(
                    f"a skip connection crosses the cut after '{cut_name}': layer '{consumer.name}' on the server "
                    f"also reads the output of '{_keras_graph.producer(parent).name}' on the client. "
                    "Cut before the branch starts or after the branches merge"
                )
            stack.append(parent)
    if not reaches_cut:
        raise ValueError(f"the output of layer '{cut_name}' does not lead to the model's output; cut on the main path")
