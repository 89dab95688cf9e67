"""Every default of an audit run, in one place (no TensorFlow import: command-line parsers read it too).

The run layer (`unsplit_tf.runs`), the sweep cells and the command-line front
doors all take their defaults from here, so a default is decided once.
"""

ARCHITECTURES = ("reference", "resnet20")
"""The victim nets the tool trains itself: the dataset's reference net of the paper, or ResNet-20 (SDAR's)."""
DEPTH = 2
"""Where the client ends by default: after the first pooling layer of the reference nets."""
EPOCHS = 2
"""Split-learning training epochs of a victim (the authors' demos train 10; 2 reach within a point on Fashion-MNIST)."""
BATCH_SIZE = 64
SEED = 0
TARGETS = 10
"""Attacked test images, taken class by class (10: the first test image of each class, as the authors)."""
PRESET = "tuned"
"""The strongest data-oblivious inversion preset; "paper" reproduces the authors exactly."""
STREAM_PRESET = "stream"
"""The preset `--observations` takes unless one is named: `tuned` retuned for minibatches of the observation stream."""
FAST_STREAM_PRESET = "stream_fast"
"""`stream` cut to about 3 minutes of attack at depth 3 on a 2-core CPU; what `benchmark --only stream_result` times."""
DEEP_STREAM_PRESET = "stream_deep"
"""`stream` for cuts past the second pooling layer: a linear start, restarts kept by matching loss, the L1 TV term."""
MODE = "batched"
IMAGE_PRIORS = {"mnist": "black_background", "f_mnist": "black_background"}
"""What UnSplit's stream mode assumes about a dataset's pictures unless a prior is named: MNIST's and Fashion-MNIST's
are objects on black that reach white (their training sets: the frames' median pixel 0, the 99th percentile 0.99);
CIFAR-10's photographs have no such prior. Without it the stream attack's pictures fade to grey (docs/ALGORITHMS.md)."""


def image_prior(dataset: str, mode: str) -> str:
    """The prior an UnSplit attack in `mode` takes on `dataset` (a canonical name) when none is named."""
    return IMAGE_PRIORS.get(dataset, "none") if mode == "stream" else "none"


AUX = 6000
"""Auxiliary images an auxiliary-data attack (SDAR, inverse network) is given: a tenth of Fashion-MNIST's training set."""
SWEEP_BUDGET = (100, 100, 100)
"""Inversion budget of a sweep cell: (main_iters, input_iters, model_iters), 100 rounds of 100 + 100 steps."""

LABEL_DEPTH = 2
"""The client's bottom part in label inference (U-shaped split) ends after this layer."""
LABEL_SAMPLES = 100
"""Training examples the label attacks observe."""
LABEL_BATCH_SIZE = 1
"""Batch size of a label-inference run (1, as the authors' demo)."""
LABEL_EPOCHS = 1
"""Label runs train one epoch by default: the labels are inferred during the first steps, as in the authors' demo."""
KNOWN_PER_CLASS = 1
"""Labels of the first K examples of each class the server is told (side knowledge to name classes)."""

DEFENSE_LABEL_SAMPLES = 512
DEFENSE_LABEL_BATCH_SIZE = 64
"""Label runs against a gradient defense train on the whole training set at this batch size, observing the first
DEFENSE_LABEL_SAMPLES examples: the defended model's accuracy (its cost) needs real training."""
DCOR_SAMPLES = 512
"""Test images over which the distance correlation dCor(x, z) of a victim's cut is measured."""
