"""What every verb shares: the entry wrapper (errors, Ctrl-C, exit codes), dataset and training flags.

Exit codes: 0 done; 1 a run-time failure (data missing, a file unreadable);
2 a usage error (bad flag values, refused by argparse or by a library
config's validation); 130 interrupted with Ctrl-C, after writing what finished.
Set UNSPLIT_TF_DEBUG=1 to see the traceback behind an error message.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

INTERRUPTED = 130


class CliError(Exception):
    """A one-line message for the user (what is wrong and what to do), and the exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class Interrupted(Exception):
    """Ctrl-C arrived and what was finished has been written; the message says where."""


def parser_for(module: ModuleType, prog: str | None = None) -> argparse.ArgumentParser:
    """The verb's parser: its module docstring as the description, its `add_arguments` for the flags."""
    parser = argparse.ArgumentParser(prog=prog, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    return parser


def stream_preset_alone(what: str, fix: str) -> CliError:
    """The refusal of a preset made for stream mode asked to attack the targets alone (it reads as "no leak" there)."""
    return CliError(f"{what} is made for the observation stream (tuned on thousands of observed training examples, "
                    f"not on the targets alone): {fix}")


def in_flag_terms(message: str, flags: dict[str, str]) -> str:
    """A library config's message with each of its field names that a flag sets written as that flag ("linear_start" ->
    "--linear-start", "batch_size" -> "--stream-batch", "restarts=3" -> "--restarts 3"), so a command-line user reads
    the flag to change. A single word ("restarts", "mode") is replaced only where it is given a value: elsewhere it
    reads the same either way, and is often English."""
    for name, flag in flags.items():  # whole names only: "refit_iters" is not inside "final_refit_iters" (\b)
        message = re.sub(rf"\b{name}=", f"{flag} ", message)
        if "_" in name:
            message = re.sub(rf"\b{name}\b", flag, message)
    return message


def main_of(module: ModuleType, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse `argv` for the verb in `module`, run it, and turn every expected failure into a message and an exit code."""
    parser = parser_for(module, prog)
    given = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(given)
    args.argv = given  # the verb's own flags as typed, for the records' command line
    try:
        return guarded(lambda: module.run(args))
    except CliError as error:
        if error.code == 2:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
        parser.exit(error.code, f"error: {error}\n")
    return 0


def guarded(work: Callable[[], int | None]) -> int:
    """Run `work`; library errors become CliError, Ctrl-C becomes exit code 130 with one line."""
    from unsplit_tf.data import DataUnavailableError

    try:
        return work() or 0
    except (CliError, SystemExit):
        raise
    except Interrupted as note:
        print(f"\ninterrupted: {note}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:
        print("\ninterrupted before anything was finished; nothing written", file=sys.stderr)
        return INTERRUPTED
    except ValueError as error:
        _debug()
        raise CliError(str(error)) from None
    except (DataUnavailableError, OSError) as error:
        _debug()
        raise CliError(str(error), code=1) from None
    except (zipfile.BadZipFile, EOFError) as error:  # a truncated or corrupt file a flag named
        _debug()
        raise CliError(f"a file given on the command line is truncated or corrupt ({type(error).__name__}: {error}); "
                       "check the paths given to --data-dir and --model", code=1) from None


def _debug() -> None:
    if os.environ.get("UNSPLIT_TF_DEBUG"):
        raise


class SettingFlag(NamedTuple):
    """A flag that sets one field of an attack's config: its argparse type and metavar (or its choices), its help, and
    what the field is where a refusal names it (invert's SDAR flags under another attack). The grid verbs refuse a
    number below `least`, and `least` itself too when `above` is set (learning rates), before the grid's first cell;
    `invert` builds the config at once, which checks the same."""

    type: Callable[[str], Any]
    metavar: str | None
    help: str
    what: str = ""
    least: float = 0
    above: bool = False
    choices: tuple[str, ...] | None = None

    def refusal(self, flag: str, value: Any) -> str | None:
        """Why `value` is refused for `flag` ("--simulator-lr must be more than 0, got 0"), or None."""
        if self.choices is not None:
            return None
        if self.above and not value > self.least:
            return f"{flag} must be more than {self.least:g}, got {value:g}"
        if value < self.least:
            return f"{flag} must be {self.least:g} or more, got {value:g}"
        return None


def finite_float(text: str) -> float:
    """argparse type of every real-valued flag: a finite number (NaN and infinity refused, as the configs do)."""
    from unsplit_tf._validation import finite

    try:
        return finite("the value", float(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number" if "number" not in str(error) else str(error)) from None


def add_data_flags(parser: argparse.ArgumentParser, *, default_dataset: str = "f_mnist") -> None:
    from unsplit_tf.data import DATASET_NAMES

    parser.add_argument("--dataset", default=default_dataset, help=f"one of {', '.join(DATASET_NAMES)} (default {default_dataset}, which ships with the package)")
    parser.add_argument("--data-dir", metavar="DIR", help="folder (or .npz file) with local copies of the data; see the README's 'Data'")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def add_training_flags(parser: argparse.ArgumentParser, *, epochs_default: str | None = None) -> None:
    from unsplit_tf.protocol import TrainConfig

    shown = epochs_default or str(TrainConfig.epochs)
    parser.add_argument("--epochs", type=int, help=f"split-learning training epochs (default {shown})")
    parser.add_argument("--batch-size", type=int, help=f"training batch size (default {TrainConfig.batch_size})")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", help="where trained models are cached (default $UNSPLIT_TF_CACHE or ~/.cache/unsplit_tf)")


def train_config(args: argparse.Namespace, *, epochs: int | None = None):
    """The TrainConfig of the flags: each flag given replaces the library's default (`epochs` the verb's own)."""
    from unsplit_tf.protocol import TrainConfig

    chosen = {"epochs": args.epochs if args.epochs is not None else epochs, "batch_size": args.batch_size}
    return TrainConfig(seed=args.seed, **{name: value for name, value in chosen.items() if value is not None})


def cache_folder(args: argparse.Namespace) -> Path:
    """The model cache, checked writable before any training."""
    from unsplit_tf.cli._outputs import writable_folder
    from unsplit_tf.protocol import default_cache_dir

    if args.cache_dir is not None:
        return writable_folder(args.cache_dir, "--cache-dir")
    return writable_folder(default_cache_dir(), "the model cache (set --cache-dir or $UNSPLIT_TF_CACHE)")


def load_data(args: argparse.Namespace):
    """The dataset the flags name, with a line saying where it came from and any loader note."""
    from unsplit_tf.data import load_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(args.dataset, args.data_dir)
    for warning in caught:
        print(f"note: {warning.message}")
    print(f"data: {data.name} from {data.source}: {len(data.x_train)} train / {len(data.x_test)} test images")
    return data


def kept_restarts(config, compared_after: int | None = None) -> str:
    """How many restarts UnSplit runs and how one is kept ("3 restarts kept by matching+agreement after 5 of 15 rounds, ...");
    `compared_after` as in `screened`."""
    return f"{config.restarts} restarts kept by {config.keep}{screened(config, compared_after)}"


def screened(config, compared_after: int | None = None) -> str:
    """When restarts are compared part-way (`screen`), after which round; nothing when they are compared at the end
    as planned. `compared_after`: the round a finished attack compared them after (`InversionResult`), else the plan."""
    if config.screen_rounds == config.main_iters:
        return ""
    if compared_after == config.main_iters:
        return f" at the end (no two agreed after round {config.screen_rounds})"
    deferred = " (all run on to the end if no two agree by then)" if config.screen_may_defer and compared_after is None else ""
    return f" after {config.screen_rounds} of {config.main_iters} rounds, only the kept one running on{deferred}"
