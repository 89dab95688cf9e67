"""What both gradient-matching attacks share: the config base, the clone and its Adam step, the compiled loop.

UnSplit's label inference (Algorithm 2 of the paper): for every example the
server predicts the gradient each candidate label would produce, picks the
candidate nearest to what it observed, and trains its clone of the head one
cross-entropy step on the labels it picked. The observation models differ in
what is observed and how a candidate is predicted (`weight_gradient`,
`activation_gradient`); everything else lives here, once.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from unsplit_tf._validation import at_least, positive
from unsplit_tf.attacks.labels.results import (
    History,
    LabelInferenceResult,
    LabelInferenceStep,
    check_finite,
    check_known_labels,
)
from unsplit_tf.optim import ResettableAdam
from unsplit_tf.split import clone_architecture, counted_layers

OBSERVATIONS: tuple[str, ...] = ("weight_gradient", "activation_gradient")
"""What the server may observe of the client's head in training: dL/dW (the authors' assumption) or dL/da."""


def check_observation(observation: str) -> str:
    """Return `observation` if it is one of OBSERVATIONS; else raise a ValueError listing them."""
    if observation not in OBSERVATIONS:
        close = difflib.get_close_matches(str(observation), OBSERVATIONS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown observation model {observation!r}; valid ones: {', '.join(OBSERVATIONS)}.{hint}")
    return observation


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """`value` if it is one of `choices`; else a ValueError naming the field and the valid ones."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid ones: {', '.join(choices)}")
    return value


def check_flag(name: str, value: Any) -> bool:
    """`value` if it is a bool; else a ValueError (a string such as "false" would read as True)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


_CONFIGS: dict[str, type[LabelInferenceConfig]] = {}
_ATTACKS: dict[type, type[LabelInferenceAttack]] = {}


class _PickedByObservation(type):
    """Calling `LabelInferenceConfig(observation, **fields)` itself builds that observation's own config."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is LabelInferenceConfig:
            return _config_for(*args, **kwargs)
        return super().__call__(*args, **kwargs)


def _config_for(observation: str = "weight_gradient", **fields: Any) -> LabelInferenceConfig:
    config_type = _CONFIGS[check_observation(observation)]
    for name in fields:
        if name not in config_type.__dataclass_fields__:
            owners = [c for c in _CONFIGS.values() if name in c.__dataclass_fields__]
            where = f"it applies to {owners[0].observation} only ({owners[0].__name__})" if owners else "no such field"
            raise ValueError(f"{config_type.__name__} (observation={observation!r}) has no field {name!r}: {where}")
    return config_type(**fields)


@dataclass(frozen=True, kw_only=True)
class LabelInferenceConfig(metaclass=_PickedByObservation):
    """Hyper-parameters both gradient-matching attacks share; defaults follow the authors' code.

    Each observation model has its own config (`WeightGradientConfig`,
    `ActivationGradientConfig`); `LabelInferenceConfig(observation, **fields)`
    builds the one for `observation`.

    learning_rate, amsgrad: the clone's Adam optimiser for its cross-entropy step on
        the inferred labels (the original: 1e-3, amsgrad).
    seed: the clone's initial weights.
    jit_compile: compile the sequential part (matching and the clone's steps) with XLA
        (the default: several times faster on CPU for this many small operations; each
        new batch shape compiles once, in about a second), or run the same loop as a
        plain TensorFlow graph (False).
    """

    observation: ClassVar[str]
    learning_rate: float = 1e-3
    amsgrad: bool = True
    seed: int = 0
    jit_compile: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CONFIGS[cls.observation] = cls

    def __post_init__(self) -> None:
        positive("learning_rate", self.learning_rate)
        check_flag("amsgrad", self.amsgrad)
        at_least("seed", self.seed, 0)
        check_flag("jit_compile", self.jit_compile)

    @property
    def method(self) -> str:
        """A short name for results: "gradient_matching", plus what differs from the defaults, e.g. "[clone softmax]"."""
        changes = self.variant()
        return "gradient_matching" + (f"[{', '.join(changes)}]" if changes else "")

    def variant(self) -> list[str]:
        """What differs from this observation model's defaults, for `method`."""
        raise NotImplementedError

    def authors_variant(self) -> LabelInferenceConfig:
        """This config with the authors' algorithm in place of this library's improvement to it."""
        raise NotImplementedError


def head_dense_layer(head: keras.Model) -> keras.layers.Dense:
    """The head's only layer, checked to be a linear Dense layer (the closed-form gradients assume it)."""
    if not isinstance(head, keras.Model):
        raise ValueError(f"head must be a keras.Model (the client's head), got {type(head).__name__}")
    counted = counted_layers(head)
    if len(counted) != 1 or not isinstance(counted[0], keras.layers.Dense):
        raise ValueError(
            f"label inference needs the client's head to be one Dense layer producing logits "
            f"(split_u_shaped(..., head_layers=1)); head '{head.name}' has layers "
            f"{', '.join(layer.name for layer in counted) or 'none'}"
        )
    dense = counted[0]
    if dense.activation not in (keras.activations.linear, None):
        raise ValueError(
            f"the head's Dense layer '{dense.name}' applies {dense.activation.__name__}; it must output logits "
            "(activation=None), the loss applies the softmax"
        )
    if len(dense.kernel.shape) != 2:
        raise ValueError(f"the head's Dense layer '{dense.name}' must act on flat features, kernel shape {dense.kernel.shape}")
    return dense


class LabelInferenceAttack:
    """UnSplit's label inference by gradient matching, vectorised over candidates and examples.

    head: the client's head, of which the server knows the architecture only
        (e.g. `split_u_shaped(model, depth=d).client_head`); it must be a single
        linear Dense layer producing the logits. Its weights are never read: the
        server works with a clone (`clone_architecture`).
    Feed it one training step at a time with `step(activations, observed)` or
    `attack_record(record)` (a `protocol.UShapedWireRecord`), or many recorded
    steps in one compiled call with `steps(...)`; `result()` gathers everything
    inferred so far. Each call infers the labels, then trains the clone.

    `LabelInferenceAttack(head, config)` builds the attack of the config's
    observation model (`WeightGradientAttack`, `ActivationGradientAttack`).
    """

    config_type: ClassVar[type[LabelInferenceConfig]]
    observed_name: ClassVar[str]
    """What `observed` is, for error messages."""
    record_field: ClassVar[str]
    """The `UShapedWireRecord` field holding this observation."""
    infers_labels: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _ATTACKS[cls.config_type] = cls

    def __new__(cls, head: keras.Model, config: LabelInferenceConfig | None = None) -> LabelInferenceAttack:
        if cls is LabelInferenceAttack:
            config_type = type(config) if config is not None else _CONFIGS["weight_gradient"]
            if config_type not in _ATTACKS:
                raise ValueError(f"config must be a WeightGradientConfig or ActivationGradientConfig, got {config_type.__name__}")
            cls = _ATTACKS[config_type]
        return super().__new__(cls)

    def __init__(self, head: keras.Model, config: LabelInferenceConfig | None = None) -> None:
        config = self.config_type() if config is None else config
        if not isinstance(config, self.config_type):
            raise ValueError(f"{type(self).__name__} takes a {self.config_type.__name__}, got {type(config).__name__}")
        dense = head_dense_layer(head)
        self.config = config
        self.feature_dim = int(dense.kernel.shape[0])
        self.num_classes = int(dense.kernel.shape[1])
        self.clone = clone_architecture(head, seed=config.seed)
        clone_dense = head_dense_layer(self.clone)
        self._kernel = clone_dense.kernel
        self._bias = clone_dense.bias if clone_dense.use_bias else None
        self._optimizer = ResettableAdam(self._clone_variables(), config.learning_rate, amsgrad=config.amsgrad)
        self._prepare()
        # Traced once, here, and called as concrete functions: online, one call per training step,
        # tf.function's dispatch would cost several times the arithmetic.
        # Without autograph: every loop is an explicit tf.while_loop (autograph's conversion failed now and then).
        self._run = tf.function(self._run_body, jit_compile=config.jit_compile, autograph=False).get_concrete_function(
            self._steps_of(self.feature_dim), self._steps_of(self._evidence_width), tf.TensorSpec((None, None), tf.int64)
        )
        self._history = History()

    @property
    def observation(self) -> str:
        return self.config.observation

    @property
    def method(self) -> str:
        return self.config.method

    # -- public

    def step(self, activations: Any, observed: Any, *, known_labels: Any = None, step: int | None = None) -> LabelInferenceStep:
        """Infer the labels of one training batch, then update the clone (as the original does every step).

        activations: (B, D) what the server sent to the client's head.
        observed: what this observation model sees of the batch (`observed_shape`).
        known_labels: optional (B,) labels the attacker knows, UNKNOWN (-1) elsewhere;
            they are used as given instead of inferred.
        """
        a, observed, known = self._check_inputs(activations, observed, known_labels)
        labels, distances = self._infer(a[None], observed[None], known[None])
        out = LabelInferenceStep(labels[0], -distances[0])
        self._history.add(out, known, step)
        return out

    def steps(self, activations: Any, observed: Any, *, known_labels: Any = None) -> LabelInferenceStep:
        """`step` on T training steps of equal batch size B, in order, in one compiled call.

        For attacking a recorded run fast (e.g. batch 1, where calling `step` per example costs
        more in dispatch than in arithmetic). activations: (T, B, D); observed: T stacked
        observations; known_labels: (T, B) or None. Returns labels (T, B) and scores
        (T, B, C); the clone learns step by step as with `step`.
        """
        a = np.asarray(activations, dtype=np.float32)
        observed = np.asarray(observed, dtype=np.float32)
        if a.ndim != 3 or a.shape[0] < 1:
            raise ValueError(f"activations must have shape (steps >= 1, batch, {self.feature_dim}), got {a.shape}")
        if len(observed) != len(a):
            raise ValueError(f"{len(a)} steps of activations but {len(observed)} of observations")
        self._check_inputs(a[0], observed[0], None)  # one step's shapes stand for all: they are the same at every step
        check_finite("activations", a)
        check_finite(f"observed {self.observed_name}", observed)
        known = check_known_labels(known_labels, a.shape[:2], self.num_classes)
        labels, distances = self._infer(a, observed, known)
        self._history.extend(labels, -distances, known)
        return LabelInferenceStep(labels, -distances)

    def attack_record(self, record: Any, *, known_labels: Any = None) -> LabelInferenceStep:
        """`step` on a `protocol.UShapedWireRecord`, taking the observation this attack's config names."""
        return self.step(record.activations, getattr(record, self.record_field), known_labels=known_labels, step=record.step)

    def result(self) -> LabelInferenceResult:
        """All labels inferred so far (known ones included, and marked)."""
        return self._history.result(self.observation, self.method, **self._details())

    # -- what each observation model defines

    _evidence_width: int
    """Last axis of what the compiled loop matches per example (set by `_prepare`)."""

    def _prepare(self) -> None:
        """Set up what the observation model needs beyond the clone, before the loop is traced."""
        raise NotImplementedError

    def observed_shape(self, batch: int) -> tuple[int, ...]:
        """The shape of one step's observation for a batch of `batch`."""
        raise NotImplementedError

    def _evidence(self, activations: tf.Tensor, observed: tf.Tensor) -> tf.Tensor:
        """What the compiled loop matches, (T, B, _evidence_width), from T steps' observations."""
        raise NotImplementedError

    def _run_body(self, activations: tf.Tensor, evidence: tf.Tensor, known: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Labels (T, B) and distances (T, B, C); trains the clone after each step. Traced once, compiled."""
        raise NotImplementedError

    def _details(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- shared parts

    @staticmethod
    def _steps_of(width: int) -> tf.TensorSpec:
        return tf.TensorSpec((None, None, width), tf.float32)  # (T, B, width)

    def _check_inputs(self, activations: Any, observed: Any, known_labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = np.asarray(activations, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != self.feature_dim:
            raise ValueError(
                f"activations must have shape (batch, {self.feature_dim}) (the head's input), got {a.shape}"
            )
        batch = a.shape[0]
        if batch < 1:
            raise ValueError("batch size must be at least 1: activations hold no example")
        observed = np.asarray(observed, dtype=np.float32)
        expected = self.observed_shape(batch)
        if observed.shape != expected:
            raise ValueError(
                f"observation {self.observation!r} expects {self.observed_name} of shape {expected} for a batch of {batch}, "
                f"got {observed.shape}"
            )
        check_finite("activations", a)
        check_finite(f"observed {self.observed_name}", observed)
        return a, observed, check_known_labels(known_labels, (batch,), self.num_classes)

    def _infer(self, a: np.ndarray, observed: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels (T, B) and distances (T, B, C) of T checked steps; the clone learns after each step.

        What the clone does not influence (`_evidence`) is computed for all T steps at once,
        outside XLA; the sequential part, matching and the clone's updates, runs as one
        XLA-compiled loop.
        """
        a = tf.constant(a)
        evidence = self._evidence(a, tf.constant(observed))
        labels, distances = self._run(a, tf.convert_to_tensor(evidence), tf.constant(known))
        return labels.numpy().astype(np.int64), distances.numpy()

    @staticmethod
    def _sequential(body, activations: tf.Tensor, evidence: tf.Tensor, known: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`body(a_t, evidence_t, known_t) -> (labels_t, distances_t)` for t = 1..T in order, stacked."""
        count = tf.shape(activations)[0]

        def step(t: tf.Tensor, labels: tf.TensorArray, distances: tf.TensorArray) -> tuple:
            labels_t, distances_t = body(activations[t], evidence[t], known[t])
            return t + 1, labels.write(t, labels_t), distances.write(t, distances_t)

        start = (tf.constant(0), tf.TensorArray(tf.int64, size=count), tf.TensorArray(tf.float32, size=count))
        _, labels, distances = tf.while_loop(lambda t, *_: t < count, step, start)
        return labels.stack(), distances.stack()

    def _logits(self, a: tf.Tensor, kernel: tf.Tensor | None = None) -> tf.Tensor:
        logits = tf.matmul(a, self._kernel if kernel is None else kernel)
        return logits if self._bias is None else logits + self._bias

    def _train_clone(self, a: tf.Tensor, labels: tf.Tensor) -> None:
        """The original's clone update: one Adam step on the mean cross-entropy of the inferred labels.

        The gradients are written in closed form (the head is one Dense layer):
        d loss / d logits = (softmax - onehot) / B, as `candidate_logit_gradients`.
        """
        logit_grads = (tf.nn.softmax(self._logits(a)) - tf.one_hot(labels, self.num_classes)) / tf.cast(tf.shape(a)[0], tf.float32)
        grads = [tf.matmul(a, logit_grads, transpose_a=True)]
        if self._bias is not None:
            grads.append(tf.reduce_sum(logit_grads, axis=0))
        self._optimizer.apply(grads)

    def _clone_variables(self) -> list:
        return [self._kernel] + ([self._bias] if self._bias is not None else [])
