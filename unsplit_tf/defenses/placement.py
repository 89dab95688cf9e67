"""Putting a defense layer at the cut of a model (weights shared with the model).

`with_defense` inserts a defense after any layer of a functional model;
`split_with_defense` and `split_u_shaped_with_defense` cut a model with the
defense at the cut, ready for `protocol.SplitTrainer` / `UShapedTrainer`, which
add `add_loss` penalties such as NoPeek's to the client's objective.
"""

from __future__ import annotations

import keras
from keras import layers

from unsplit_tf.defenses.layers import NoPeek
from unsplit_tf.split import (
    Split,
    UShapedSplit,
    as_functional,
    counted_layers,
    find_layer,
    nodes_in,
    split_model,
    split_u_shaped,
)


def with_defense(model: keras.Model, defense: layers.Layer, *, after: str) -> keras.Model:
    """A functional copy of `model` with `defense` applied to the output of layer `after`.

    The copy reuses `model`'s layers, so it shares their weights, and reads
    the same inputs. `NoPeek` is called as defense([model input, output of
    `after`]); any other defense on the output alone.
    """
    model = as_functional(model)
    if not isinstance(defense, layers.Layer):
        raise ValueError(f"defense must be a Keras layer (e.g. ActivationNoise(0.5)), got {type(defense).__name__}")
    names = [layer.name for layer in model.layers]
    if defense.name in names:
        raise ValueError(f"model '{model.name}' already has a layer named '{defense.name}'; give the defense another name=")
    target = find_layer(model, after)
    if isinstance(target, layers.InputLayer):
        raise ValueError(f"'{after}' is the model's input; put the defense after a layer that computes something")
    calls = len(nodes_in(model, target))
    if calls != 1:
        raise ValueError(f"layer '{after}' is used {calls} times in the model, so 'after it' is ambiguous; choose another layer")
    if isinstance(defense, NoPeek) and len(model.inputs) != 1:
        raise ValueError(f"NoPeek compares the activations with the model's input, but model '{model.name}' has {len(model.inputs)} inputs")

    inputs = keras.tree.map_structure(lambda tensor: keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype), model.input)

    def call(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        if layer is not target:
            return outputs
        return defense([inputs, outputs]) if isinstance(defense, NoPeek) else defense(outputs)

    defended = keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer, call_function=call)
    defended.name = f"{model.name}_defended"
    return defended


def split_with_defense(
    model: keras.Model, defense: layers.Layer, *, depth: int | None = None, layer: str | None = None
) -> Split:
    """Cut `model` as `split_model` does, with `defense` as the client's last layer (weights shared).

    `cut_layer` and `depth` are those of the undefended cut. For defenses that
    are identities in inference (NoPeek, the gradient defenses),
    `server(client(x)) == model(x)` exactly.
    """
    plain = split_model(model, depth=depth, layer=layer)
    defended = split_model(with_defense(model, defense, after=plain.cut_layer), layer=defense.name)
    return Split(client=defended.client, server=defended.server, cut_layer=plain.cut_layer, depth=plain.depth)


def split_u_shaped_with_defense(
    model: keras.Model, defense: layers.Layer, *, depth: int, head_layers: int = 1
) -> UShapedSplit:
    """`split_u_shaped` with `defense` as the first layer of the client's head.

    A gradient defense there perturbs the d loss / d activations the server
    receives; the head's own weights still get the true gradient.
    """
    if isinstance(defense, NoPeek):
        raise ValueError("NoPeek needs the model's input, which the head does not have; use split_with_defense at the bottom cut")
    model = as_functional(model)
    split_u_shaped(model, depth=depth, head_layers=head_layers)  # the same checks, with their messages
    counted = counted_layers(model)
    before_head = counted[len(counted) - head_layers - 1]
    return split_u_shaped(with_defense(model, defense, after=before_head.name), depth=depth, head_layers=head_layers + 1)
