"""A user's saved model (`--model FILE`), loaded in safe mode and checked against the dataset before any work."""

from __future__ import annotations

import zipfile
from pathlib import Path

from unsplit_tf.cli._common import CliError


def load_user_model(path: Path, data):
    """The functional form of the `.keras` model at `path`, checked to be a one-output classifier of `data`.

    Every refusal names the file, what is wrong and what to do; nothing here runs code from the file
    (Keras' safe mode refuses Lambda layers).
    """
    import keras

    from unsplit_tf.split import as_functional

    if not path.is_file():
        raise CliError(f"--model {path}: no such file; give the path of a model saved with model.save('NAME.keras')", code=1)
    if not zipfile.is_zipfile(path):
        raise CliError(f"--model {path} is not a readable .keras archive (truncated, or another format); "
                       "save the model again with model.save('NAME.keras')", code=1)
    try:
        model = as_functional(keras.models.load_model(path, safe_mode=True, compile=False))
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise CliError(f"--model {path} cannot be loaded: {error}", code=1) from None
    if len(model.outputs) != 1:
        raise CliError(f"--model {path} has {len(model.outputs)} outputs; the attacks need a classifier with one "
                       "output (the logits): save a model that ends in its classification layer")
    shape = tuple(model.inputs[0].shape[1:])
    if shape != data.input_shape:
        raise CliError(f"--model {path} takes inputs of shape {shape} but {data.name} images are {data.input_shape}; "
                       "choose the --dataset the model was trained on")
    classes = model.outputs[0].shape[-1]
    if classes != data.num_classes:
        raise CliError(f"--model {path} outputs {classes} classes but {data.name} has {data.num_classes}: its accuracies "
                       "would mean nothing; choose the --dataset the model was trained on")
    return model
