"""What the command-line tests share: tiny synthetic data and running a verb in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unsplit_tf.cli import main as cli_main


def tiny_npz(path: Path, *, train: int = 64, test: int = 20) -> Path:
    """MNIST-shaped synthetic data, every class present in both splits."""
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (train, 28, 28), dtype=np.uint8), y_train=np.arange(train) % 10,
             x_test=rng.integers(0, 255, (test, 28, 28), dtype=np.uint8), y_test=np.arange(test) % 10)
    return path


def run_verb(verb: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """`unsplit-tf VERB argv` in this process: (exit code, stdout, stderr)."""
    try:
        code = cli_main.main([verb, *argv])
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
