"""Rebuild unsplit_tf/resources/fashion_mnist_subset.npz from the original Fashion-MNIST files.

The subset is the FIRST 3000 training and FIRST 1000 test images (uint8, 28x28)
with their labels, so "the first test image of each class" is the same image as
in the full test set. It is what load_dataset("f_mnist") falls back to when no
full copy is found. np.savez_compressed keeps it under 2 MB.

Usage (after `apt-get install dataset-fashion-mnist`):
    python scripts/make_embedded_subset.py [--source /usr/share/datasets/fashion-mnist]
"""

import argparse
import gzip
from pathlib import Path

import numpy as np

TRAIN_SIZE = 3000
TEST_SIZE = 1000
OUTPUT = Path(__file__).resolve().parents[1] / "unsplit_tf" / "resources" / "fashion_mnist_subset.npz"


def read_idx(path: Path, header_size: int) -> np.ndarray:
    """Bytes after the IDX header (16 bytes for images, 8 for labels)."""
    with gzip.open(path, "rb") as file:
        return np.frombuffer(file.read(), dtype=np.uint8, offset=header_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="folder with the four Fashion-MNIST *-ubyte.gz files")
    args = parser.parse_args()

    x_train = read_idx(args.source / "train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y_train = read_idx(args.source / "train-labels-idx1-ubyte.gz", 8)
    x_test = read_idx(args.source / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y_test = read_idx(args.source / "t10k-labels-idx1-ubyte.gz", 8)
    np.savez_compressed(OUTPUT, x_train=x_train[:TRAIN_SIZE], y_train=y_train[:TRAIN_SIZE],
                        x_test=x_test[:TEST_SIZE], y_test=y_test[:TEST_SIZE])
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
