"""Every ```python block of README.md runs as written, offline, on a tiny budget.

Each block is one test case (named by its first line in README.md). It runs
unchanged, in a fresh Python process (a fresh namespace: a block may not lean
on names of an earlier one, as a reader copying it would not), in a temporary
working directory, after a short prelude (`PRELUDE`) that makes it tiny and
offline in two explicit ways, and nothing else:

- `unsplit_tf.data.load_dataset` returns, whatever the name and data_dir asked
  for, a small class-balanced slice (120 train, 10 test images: enough for the label example's 100 samples) of the Fashion-MNIST subset embedded in the
  package (seeded noise images for CIFAR-10), and never touches the network;
- the inversion attack (`invert`) runs at most 2 rounds of 5 + 5 steps.

Both are patched where they are defined and wherever a module already holds
them, before the block imports anything, so a block sees them whichever
import path it uses. UNSPLIT_TF_CACHE points into the temporary folder, so
no trained model is read from or left in the user's cache.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TIMEOUT = 240  # seconds per block; each takes a few here (2-core CPU), most of it importing TensorFlow

PRELUDE = textwrap.dedent(
    '''
    def _tiny_and_offline():
        import sys
        import numpy as np
        import unsplit_tf.data as data_module
        from unsplit_tf.attacks.inversion import unsplit as inversion_module

        load_dataset, invert = data_module.load_dataset, inversion_module.invert
        embedded_path = data_module.resources.files("unsplit_tf") / "resources" / data_module.EMBEDDED_FASHION_MNIST

        def tiny_dataset(name, data_dir=None, *, download=True):
            name = data_module.canonical_name(name)
            embedded = load_dataset("f_mnist", data_dir=embedded_path)
            train = data_module.indices_by_class(embedded.y_train, 120)
            test = data_module.indices_by_class(embedded.y_test, 10)
            x_train, x_test = embedded.x_train[train], embedded.x_test[test]
            if name == "cifar10":
                rng = np.random.default_rng(0)
                x_train, x_test = (rng.random((len(x), 32, 32, 3), dtype=np.float32) for x in (x_train, x_test))
            return data_module.Dataset(name, x_train, embedded.y_train[train], x_test, embedded.y_test[test],
                                       "README test: a tiny slice", data_module.CLASS_NAMES[name])

        def tiny_invert(client_architecture, observed, config=inversion_module.InversionConfig(), **options):
            budget = {"main_iters": min(config.main_iters, 2), "input_iters": min(config.input_iters, 5),
                      "model_iters": min(config.model_iters, 5)}
            return invert(client_architecture, observed, config.replace(**budget), **options)

        for module in list(sys.modules.values()):
            for attribute, value in list(getattr(module, "__dict__", {}).items()):
                if value is load_dataset:
                    setattr(module, attribute, tiny_dataset)
                elif value is invert:
                    setattr(module, attribute, tiny_invert)

    _tiny_and_offline()
    del _tiny_and_offline
    '''
)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the block's first code line, code) for every ```python fence."""
    blocks = []
    for match in re.finditer(r"^```python[ \t]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        blocks.append((text.count("\n", 0, match.start(1)) + 1, match.group(1)))
    return blocks


BLOCKS = python_blocks(README.read_text())


def test_readme_has_python_examples():
    assert BLOCKS, "README.md has no ```python block"


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block_runs(code, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(PRELUDE + "\n" + code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "UNSPLIT_TF_CACHE": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, f"the block failed:\n{code}\n--- stderr (last lines) ---\n{done.stderr[-3000:]}"
