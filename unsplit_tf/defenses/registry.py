"""The named defenses: what each protects, what its strength means, its default strength grid, its layer.

A run names a defense by a `records.DefenseSetting` (name and strength); this
registry turns it into the Keras layer put at the cut (`make_defense`), and is
the one place the sweep's defense axis and the reports read the meanings from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras

from unsplit_tf.defenses.layers import (
    ActivationNoise,
    GradientClipping,
    GradientNoise,
    LabelSubspaceNoise,
    MaxNormNoise,
    NoPeek,
)
from unsplit_tf._validation import positive
from unsplit_tf.records import NO_DEFENSE, DefenseSetting

ACTIVATIONS = "activations"
"""Protects what the client sends up (against inversion and stealing): placed at the client's cut."""
GRADIENTS = "gradients"
"""Protects the dL/da the server receives (against label inference): placed at the input of the client's head."""

LAYER_NAME = "defense"


@dataclass(frozen=True)
class NamedDefense:
    """One defense of the registry.

    build(strength, model, seed) -> the layer; `model` is the whole net (a
    label-subspace defense needs its output layer), `seed` makes noise repeatable.
    """

    name: str
    protects: str
    strength_meaning: str | None  # None: the defense has no strength
    default_strengths: tuple[float | None, ...]
    build: Callable[[float | None, keras.Model, int], keras.layers.Layer]


DEFENSES: dict[str, NamedDefense] = {
    one.name: one for one in (
        NamedDefense("gaussian_noise", ACTIVATIONS, "noise stddev / the example's RMS activation", (0.1, 0.5, 1.0, 2.0),
                     lambda s, model, seed: ActivationNoise(s, "gaussian", relative=True, seed=seed, name=LAYER_NAME)),
        NamedDefense("laplace_noise", ACTIVATIONS, "noise stddev / the example's RMS activation", (0.5, 1.0, 2.0),
                     lambda s, model, seed: ActivationNoise(s, "laplace", relative=True, seed=seed, name=LAYER_NAME)),
        NamedDefense("nopeek", ACTIVATIONS, "weight of dCor(x, z) in the client's loss", (1.0, 3.0, 5.0, 10.0),
                     lambda s, model, seed: NoPeek(s, name=LAYER_NAME)),
        NamedDefense("gradient_clipping", GRADIENTS, "largest ‖dL/da‖ per example that passes", (0.01, 0.003, 0.001),
                     lambda s, model, seed: GradientClipping(s, name=LAYER_NAME)),
        NamedDefense("gradient_noise", GRADIENTS, "noise norm / the batch's largest ‖dL/da‖", (0.5, 1.0, 2.0, 4.0),
                     lambda s, model, seed: GradientNoise(s, relative=True, seed=seed, name=LAYER_NAME)),
        NamedDefense("label_subspace_noise", GRADIENTS, "noise norm / the batch's largest ‖dL/da‖", (0.5, 1.0, 2.0, 4.0),
                     lambda s, model, seed: LabelSubspaceNoise(s, model.layers[-1], relative=True, seed=seed, name=LAYER_NAME)),
        NamedDefense("max_norm_noise", GRADIENTS, None, (None,),
                     lambda s, model, seed: MaxNormNoise(seed=seed, name=LAYER_NAME)),
    )
}


def named_defense(name: str) -> NamedDefense:
    """The registry entry; ValueError listing the names if unknown."""
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; choose one of {', '.join(DEFENSES)} (or '{NO_DEFENSE.name}')")
    return DEFENSES[name]


def defenses_of(protects: str) -> tuple[str, ...]:
    """The names of the defenses that protect `protects` (ACTIVATIONS or GRADIENTS)."""
    return tuple(name for name, one in DEFENSES.items() if one.protects == protects)


def check_defense(setting: DefenseSetting, protects: str | None = None) -> DefenseSetting:
    """`setting` if it names a registered defense with a fitting strength (and protects `protects`); else ValueError."""
    if setting.name == NO_DEFENSE.name:
        if setting.strength is not None:
            raise ValueError(f"'{NO_DEFENSE.name}' takes no strength, got {setting.strength}")
        return setting
    one = named_defense(setting.name)
    if protects is not None and one.protects != protects:
        raise ValueError(f"{one.name} protects the {one.protects}, not the {protects}; "
                         f"for the {protects} choose one of {', '.join(defenses_of(protects))}")
    if one.strength_meaning is None and setting.strength is not None:
        raise ValueError(f"{one.name} has no strength, got {setting.strength}; give it without one")
    if one.strength_meaning is not None and setting.strength is None:
        raise ValueError(f"{one.name} needs a strength ({one.strength_meaning}), e.g. {one.default_strengths[0]}")
    if setting.strength is not None:
        positive(f"the strength of {one.name}", setting.strength)
    return setting


def make_defense(setting: DefenseSetting, model: keras.Model, seed: int) -> keras.layers.Layer:
    """The layer of a (checked) defense setting, named "defense", seeded so a rerun draws the same noise."""
    check_defense(setting)
    return named_defense(setting.name).build(setting.strength, model, seed)


def default_settings(names: Sequence[str] | None = None) -> list[DefenseSetting]:
    """Every named defense (or those in `names`) at each of its default strengths."""
    chosen = list(DEFENSES) if names is None else [named_defense(name).name for name in names]
    return [DefenseSetting(name, strength) for name in chosen for strength in DEFENSES[name].default_strengths]
