"""Execute the notebooks for real and save them with their outputs, as they are committed.

    nice -n 5 python notebooks/run_notebooks.py                      # every notebook
    nice -n 5 python notebooks/run_notebooks.py label_inference      # one of them

Each notebook runs top to bottom with the defaults of its parameters cell, in
this interpreter's kernel, from the notebooks/ folder (so its OUTPUT_DIR,
../runs/..., lands in the git-ignored runs/). The saved outputs are what a
Jupyter front-end would display: progress-bar redraws (carriage returns,
backspaces, colour codes) are collapsed to their final text, and TensorFlow's
C++ start-up log lines (info and warning level, written to stderr before
TF_CPP_MIN_LOG_LEVEL takes effect, timestamps and all) are dropped. The inversion notebook's comparison grid is
copied to notebooks/img/ for the README.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from unsplit_tf.reporting.document import portable

HERE = Path(__file__).resolve().parent
NOTEBOOKS = ("model_inversion_stealing", "label_inference", "keras_callbacks", "auxiliary_data_attacks", "stream_mode")
README_PICTURE = (Path("../runs/notebook_inversion/grid_comparison.png"), HERE / "img" / "inversion_grid.png")
MAX_BYTES = 1_500_000
CELL_TIMEOUT = 1800

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TF_LOG_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)$"
)


def this_interpreter_kernel(kernel_dir: Path) -> AsyncKernelManager:
    """A kernel manager for an ipykernel running on sys.executable, whatever kernelspecs are installed."""
    from ipykernel.kernelspec import write_kernel_spec

    if not (kernel_dir / "python3").exists():
        write_kernel_spec(kernel_dir / "python3")  # argv: [sys.executable, "-m", "ipykernel_launcher", ...]
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))


def terminal_text(text: str) -> str:
    """What a terminal shows for `text`: colour codes removed, carriage returns and backspaces applied."""
    lines = []
    for line in ANSI_ESCAPE.sub("", text).split("\n"):
        screen: list[str] = []
        cursor = 0
        for char in line:
            if char == "\r":
                cursor = 0
            elif char == "\b":
                cursor = max(cursor - 1, 0)
            else:
                if cursor < len(screen):
                    screen[cursor] = char
                else:
                    screen.append(char)
                cursor += 1
        lines.append("".join(screen).rstrip())
    return "\n".join(lines)


def clean_outputs(notebook: nbformat.NotebookNode) -> None:
    """Merge consecutive stream outputs, collapse progress-bar redraws, drop TensorFlow's start-up lines, shorten
    absolute paths to DIR/<last part>."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        merged: list = []
        for output in cell.outputs:
            if output.output_type == "stream" and merged and merged[-1].output_type == "stream" and merged[-1].name == output.name:
                merged[-1].text += output.text
            else:
                merged.append(output)
        kept = []
        for output in merged:
            if output.output_type == "stream":
                text = portable(terminal_text(output.text))  # no folders of this machine in committed outputs
                if output.name == "stderr":
                    text = "\n".join(line for line in text.split("\n") if not TF_LOG_LINE.match(line))
                text = text.strip("\n")
                if not text:
                    continue
                output.text = text + "\n"
            kept.append(output)
        cell.outputs = kept


def run(name: str, kernel_dir: Path) -> Path:
    path = HERE / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    client = NotebookClient(
        notebook, km=this_interpreter_kernel(kernel_dir), timeout=CELL_TIMEOUT, record_timing=False,
        resources={"metadata": {"path": str(HERE)}},
    )
    client.execute()
    clean_outputs(notebook)
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    size = path.stat().st_size
    print(f"{path.name}: executed in {time.perf_counter() - started:.0f} s, saved with outputs ({size / 1e6:.2f} MB)")
    if size > MAX_BYTES:
        print(f"warning: {path.name} is over {MAX_BYTES / 1e6:.1f} MB", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"notebooks to run: {', '.join(NOTEBOOKS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(NOTEBOOKS))
    if unknown:
        parser.error(f"unknown notebook(s) {', '.join(unknown)}; choose from {', '.join(NOTEBOOKS)}")
    with tempfile.TemporaryDirectory() as kernel_dir:
        for name in args.names or NOTEBOOKS:
            run(name, Path(kernel_dir))
            if name == "model_inversion_stealing":
                source, target = README_PICTURE
                target.parent.mkdir(exist_ok=True)
                shutil.copyfile(HERE / source, target)
                print(f"copied {source.name} to {target.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
