"""A markdown report with figures, regenerated from the cells of a sweep's results store.

Nothing here runs an attack or loads a dataset: every number and picture comes
from the stored cells (`unsplit_tf.experiments.ResultStore`), so the report can
be rebuilt at any time and always matches the results it sits beside. Per
dataset it gives a table of inversion + stealing by split depth, plots of MSE
and clone accuracy against depth, a grid of the reconstructions at every depth
(the paper's figure) and a label-inference table; then the `paper` preset on
Fashion-MNIST beside the authors' code's figures (`AUTHORS_CODE_FASHION_MNIST`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from unsplit_tf.attacks.inversion import PRESETS
from unsplit_tf.experiments import ResultStore
from unsplit_tf.plots import curves, rows_grid, save_figure

DATASET_TITLES = {"f_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar": "CIFAR-10"}


@dataclass(frozen=True)
class AuthorsFigures:
    """One depth of the authors' code's sweep: mean MSE, clone and split accuracy, seconds for 10 targets."""

    mse: float
    clone_accuracy: float
    split_accuracy: float
    seconds: float


# The authors' PyTorch code as measured in ../shared/UNSPLIT.md ("Depth sweep with the authors' code"):
# real Fashion-MNIST, client/server trained 2 epochs, budget 100 x (100 + 100), the first test image of
# each class attacked in class order with one shared clone, 2-core CPU; clone accuracy on 2,000 test images.
AUTHORS_CODE_FASHION_MNIST: dict[int, AuthorsFigures] = {
    1: AuthorsFigures(0.140, 0.836, 0.868, 128),
    2: AuthorsFigures(0.150, 0.775, 0.868, 134),
    3: AuthorsFigures(0.123, 0.275, 0.873, 193),
    4: AuthorsFigures(0.160, 0.238, 0.873, 197),
    5: AuthorsFigures(0.166, 0.307, 0.873, 199),
    6: AuthorsFigures(0.128, 0.094, 0.859, 244),
}
# The cells that compare with those figures: every parameter the authors' runs fixed.
AUTHORS_CODE_CONDITIONS: dict[str, Any] = {
    "dataset": "f_mnist", "epochs": 2, "targets": 10,
    "budget": {"main_iters": 100, "input_iters": 100, "model_iters": 100},
}
# Trivial guesses scored on the same 10 targets (UNSPLIT.md), to check that ours are the same targets.
AUTHORS_CODE_BASELINES: dict[str, float] = {"constant_0.5": 0.181, "uniform_random": 0.264, "dataset_mean": 0.088}
BASELINE_TITLES = {"constant_0.5": "grey 0.5 image", "uniform_random": "uniform noise", "dataset_mean": "dataset mean image"}
PAPER_LABEL_ACCURACY = 1.0  # the paper's abstract: the server "can infer the labels with perfect accuracy"

REPORT_NAME = "REPORT.md"
REFERENCE_PREFIXES = ("guess:", "split model:", "authors' code:")  # curves drawn dashed: references, not this run's attacks
MODE_ORDER = ("sequential", "batched")  # the authors' mode first: in tables, and in the depth grid when a preset has both


@dataclass(frozen=True)
class Series:
    """Inversion cells that differ only in depth: one line of a plot, one block of a table."""

    dataset: str
    preset: str
    mode: str
    budget: str
    epochs: int
    seed: int
    targets: int
    records: tuple[dict[str, Any], ...]  # sorted by depth

    @property
    def depths(self) -> list[int]:
        return [record["cell"]["depth"] for record in self.records]

    def at(self, depth: int) -> dict[str, Any] | None:
        return next((record for record in self.records if record["cell"]["depth"] == depth), None)

    def label(self, varying: Sequence[str] = ()) -> str:
        """"preset/mode", plus the other parameters named in `varying` (those that differ between series)."""
        extras = {"budget": self.budget, "epochs": f"{self.epochs} epochs", "seed": f"seed {self.seed}",
                  "targets": f"{self.targets} targets"}
        return ", ".join([f"{self.preset}/{self.mode}"] + [extras[name] for name in varying if name in extras])


def budget_text(budget: dict[str, int]) -> str:
    return f"{budget['main_iters']}x({budget['input_iters']}+{budget['model_iters']})"


def inversion_series(records: Sequence[dict[str, Any]]) -> dict[str, list[Series]]:
    """Inversion records grouped into series, by dataset; series ordered by preset, mode, budget, epochs, seed."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        if record["cell"]["kind"] != "inversion":
            continue
        cell = record["cell"]
        key = (cell["dataset"], cell["preset"], cell["mode"], budget_text(cell["budget"]), cell["epochs"],
               cell["seed"], cell["targets"], cell["data_tag"])
        groups.setdefault(key, []).append(record)
    preset_order = {name: index for index, name in enumerate(PRESETS)}
    by_dataset: dict[str, list[Series]] = {}
    for key in sorted(groups, key=lambda k: (k[0], preset_order.get(k[1], len(preset_order)), k[1], _mode_rank(k[2]), k[2:])):
        dataset, preset, mode, budget, epochs, seed, targets, _ = key
        ordered = tuple(sorted(groups[key], key=lambda record: record["cell"]["depth"]))
        by_dataset.setdefault(dataset, []).append(Series(dataset, preset, mode, budget, epochs, seed, targets, ordered))
    return by_dataset


def _mode_rank(mode: str) -> int:
    return MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)


def varying_fields(series: Sequence[Series]) -> list[str]:
    """The parameters besides preset and mode whose value differs between the series."""
    return [name for name in ("budget", "epochs", "seed", "targets") if len({getattr(s, name) for s in series}) > 1]


# ---------------------------------------------------------------- formatting


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} s"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; numbers right-aligned is left to the reader's renderer."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- tables


def inversion_table(series: Sequence[Series]) -> str:
    """One row per depth and series: reconstruction scores, clone quality, time."""
    varying = varying_fields(series)
    headers = ["depth", "cut after", "attack", "MSE", "PSNR (dB)", "SSIM", "clone accuracy", "agreement",
               "untrained clone", "split accuracy", "attack time", "image-steps/s"]
    rows = []
    for one in series:
        for record in one.records:
            scores, clone = record["reconstruction"], record["clone"]
            rows.append([
                record["cell"]["depth"], f"`{record['split']['cut_layer']}`", one.label(varying),
                number(scores["mean_mse"]), number(scores["mean_psnr"], 1), number(scores["mean_ssim"]),
                percent(clone["clone_accuracy"]), percent(clone["agreement"]),
                percent(record.get("clone_before_attack", {}).get("clone_accuracy")), percent(clone["original_accuracy"]),
                seconds(record["attack_seconds"]), f"{record['image_steps_per_second']:,.0f}",
            ])
    return markdown_table(headers, rows)


def baselines_line(series: Sequence[Series]) -> str:
    """The random-guess baselines of the targets (the same for every cell with the same targets)."""
    record = series[0].records[0]
    parts = [f"{BASELINE_TITLES.get(name, name)} MSE {number(scores['mean_mse'])} / SSIM {number(scores['mean_ssim'])}"
             for name, scores in record["baselines"].items()]
    return "Guesses that use no leaked information, scored on the same targets: " + "; ".join(parts) + "."


def label_table(record: dict[str, Any]) -> str:
    headers = ["method", "observes", "labels given", "accuracy", "relabelled accuracy", "AUC", "evaluated", "chance"]
    rows = [[method["description"], f"`{method['observation']}`", method["known"], percent(method["accuracy"]),
             percent(method["relabelled_accuracy"]), number(method["auc"]), method["evaluated"], percent(method["chance"])]
            for method in record["methods"]]
    return markdown_table(headers, rows)


def comparison_series(series: Sequence[Series]) -> list[tuple[str, Series]]:
    """Named series run under the authors' conditions: `paper` sequential (every seed), then one `better` series.

    Empty when no `paper` sequential series matches: then there is nothing to compare.
    """
    def matches(one: Series) -> bool:
        first = one.records[0]["cell"]
        return all(first[name] == value for name, value in AUTHORS_CODE_CONDITIONS.items())

    candidates = [one for one in series if matches(one)]
    papers = sorted((one for one in candidates if one.preset == "paper" and one.mode == "sequential"), key=lambda one: one.seed)
    if not papers:
        return []
    named = [(f"paper seed {one.seed}" if len(papers) > 1 else "paper", one) for one in papers]
    better = sorted((one for one in candidates if one.preset == "tuned"), key=lambda one: (_mode_rank(one.mode), one.seed))
    return named + ([(f"better ({better[0].mode})", better[0])] if better else [])


def comparison_table(series: Sequence[Series]) -> str | None:
    """The paper preset (sequential) and the better preset beside the authors' code, depth by depth; None if not run."""
    ours = comparison_series(series)
    if not ours:
        return None
    headers = (["depth", "MSE authors"] + [f"MSE {name}" for name, _ in ours] + [f"SSIM {name}" for name, _ in ours]
               + ["clone acc. authors"] + [f"clone acc. {name}" for name, _ in ours] + ["untrained clone ours"]
               + ["split acc. authors", "split acc. ours", "time authors"] + [f"time {name}" for name, _ in ours])
    rows, sums = [], {}
    for depth, authors in AUTHORS_CODE_FASHION_MNIST.items():
        found = [one.at(depth) for _, one in ours]
        values = {
            "mse": [authors.mse] + [r["reconstruction"]["mean_mse"] if r else None for r in found],
            "ssim": [r["reconstruction"]["mean_ssim"] if r else None for r in found],
            "clone": [authors.clone_accuracy] + [r["clone"]["clone_accuracy"] if r else None for r in found],
            "untrained": [found[0].get("clone_before_attack", {}).get("clone_accuracy") if found[0] else None],
            "split": [authors.split_accuracy, found[0]["clone"]["original_accuracy"] if found[0] else None],
            "time": [authors.seconds] + [r["attack_seconds"] if r else None for r in found],
        }
        for name, column in values.items():
            for index, value in enumerate(column):
                sums.setdefault((name, index), []).append(value)
        rows.append(_comparison_row(str(depth), values))
    means = {name: [] for name in ("mse", "ssim", "clone", "untrained", "split", "time")}
    for (name, _), column in sorted(sums.items()):
        means[name].append(None if None in column else float(np.mean(column)))
    rows.append(_comparison_row("mean", means))
    return markdown_table(headers, rows)


def _comparison_row(depth: str, values: dict[str, list[float | None]]) -> list[str]:
    return ([depth] + [number(v) for v in values["mse"]] + [number(v) for v in values["ssim"]]
            + [percent(v) for v in values["clone"] + values["untrained"]] + [percent(v) for v in values["split"]]
            + [seconds(v) for v in values["time"]])


# ---------------------------------------------------------------- figures


def depth_curves(series: Sequence[Series]) -> tuple[Any, Any]:
    """Two figures: mean MSE against depth (with the grey and mean-image guesses), clone accuracy against depth."""
    varying = varying_fields(series)
    depths = sorted({depth for one in series for depth in one.depths})

    def column(one: Series, value) -> list[float]:
        return [value(one.at(depth)) if one.at(depth) else math.nan for depth in depths]

    mse = {one.label(varying): column(one, lambda r: r["reconstruction"]["mean_mse"]) for one in series}
    first = series[0].records[0]["baselines"]
    for name in ("constant_0.5", "dataset_mean"):
        if name in first:
            mse[f"guess: {BASELINE_TITLES[name]}"] = [first[name]["mean_mse"]] * len(depths)
    accuracy = {one.label(varying): column(one, lambda r: 100 * r["clone"]["clone_accuracy"]) for one in series}
    if comparison_series(series):  # the authors' code ran under these series' conditions
        authors = [AUTHORS_CODE_FASHION_MNIST.get(depth) for depth in depths]
        mse["authors' code: paper/sequential"] = [a.mse if a else math.nan for a in authors]
        accuracy["authors' code: paper/sequential"] = [100 * a.clone_accuracy if a else math.nan for a in authors]
    accuracy["split model: server(client(x))"] = column(series[0], lambda r: 100 * r["clone"]["original_accuracy"])
    if all("clone_before_attack" in record for record in series[0].records):
        accuracy["guess: untrained clone"] = column(series[0], lambda r: 100 * r["clone_before_attack"]["clone_accuracy"])
    title = DATASET_TITLES.get(series[0].dataset, series[0].dataset)
    return (
        _mark_depths(curves(mse, x=depths, xlabel="split depth", ylabel="mean reconstruction MSE", title=f"{title}: inversion")),
        _mark_depths(curves(accuracy, x=depths, xlabel="split depth", ylabel="test accuracy through the server (%)",
                            title=f"{title}: stolen clone")),
    )


def _mark_depths(figure):
    """Depths are whole numbers: integer ticks, a marker per measured depth, references (guesses) dashed."""
    axes = figure.axes[0]
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(bottom=0)
    for line in axes.get_lines():
        if line.get_label().startswith(REFERENCE_PREFIXES):
            line.set_linestyle("--")
        else:
            line.set_marker("o")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot: lines cross everywhere
    return figure


def grid_series(series: Sequence[Series]) -> list[Series]:
    """One series per preset for the depth grid: the one with the most depths, the sequential one (the authors' mode) on a tie."""
    chosen: dict[str, Series] = {}
    for one in series:
        current = chosen.get(one.preset)
        if current is None or (len(one.records), -_mode_rank(one.mode)) > (len(current.records), -_mode_rank(current.mode)):
            chosen[one.preset] = one
    return list(chosen.values())


def depth_grid(store: ResultStore, series: Sequence[Series]):
    """Originals on top, then the reconstructions at every depth (one row per depth and preset), with each MSE."""
    shown = grid_series(series)
    depths = sorted({depth for one in shown for depth in one.depths})
    first = store.images(shown[0].records[0]["key"])
    rows, titles, captions = [first["originals"]], ["original"], [None]
    for depth in depths:
        for one in shown:
            record = one.at(depth)
            images = store.images(record["key"]) if record else {}
            if "reconstructions" not in images:
                continue
            rows.append(images["reconstructions"])
            titles.append(f"d{depth} {one.preset}" if len(shown) > 1 else f"depth {depth}")
            captions.append([f"{mse:.3f}" for mse in record["reconstruction"]["mse"]])
    rows = [np.asarray(row, np.float32) / 255 for row in rows]
    classes = shown[0].records[0]["targets"]["classes"]
    title = DATASET_TITLES.get(shown[0].dataset, shown[0].dataset)
    modes = ", ".join(f"{one.preset}/{one.mode} {one.budget}" for one in shown)
    return rows_grid(rows, titles, col_labels=classes, captions=captions,
                     title=f"{title}: reconstructions by split depth ({modes}); caption: MSE")


# ---------------------------------------------------------------- the report


def write_report(store: ResultStore, out_dir: str | Path | None = None, *, notes: str | None = None) -> Path:
    """Write REPORT.md and its figures into `out_dir` (default: the store's root) from the stored cells.

    `notes` (markdown written by people, e.g. explaining differences from the
    paper) is included as the last section. Returns the report's path.
    """
    out = Path(out_dir) if out_dir is not None else store.root
    records = store.records()
    if not records:
        raise ValueError(f"no finished cells in {store.cells_dir}; run scripts/sweep.py first")
    out.mkdir(parents=True, exist_ok=True)
    series_by_dataset = inversion_series(records)
    labels_by_dataset: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["cell"]["kind"] == "labels":
            labels_by_dataset.setdefault(record["cell"]["dataset"], []).append(record)
    datasets = [name for name in DATASET_TITLES if name in series_by_dataset or name in labels_by_dataset]
    datasets += sorted((set(series_by_dataset) | set(labels_by_dataset)) - set(datasets))

    parts = [_header(records, store, out)]
    for dataset in datasets:
        parts.append(_dataset_section(dataset, series_by_dataset.get(dataset, []), labels_by_dataset.get(dataset, []), store, out))
    parts.append(_comparison_section(series_by_dataset.get("f_mnist", [])))
    if notes:
        parts.append("## Findings\n\n" + notes.strip())
    path = out / REPORT_NAME
    path.write_text("\n\n".join(parts) + "\n")
    return path


def _header(records: Sequence[dict[str, Any]], store: ResultStore, out: Path) -> str:
    commands = sorted({record["command"] for record in records if "command" in record})
    environments = [record["environment"] for record in records if "environment" in record]
    loads = [env["load_average_1min"] for env in environments if env.get("load_average_1min") is not None]
    machine = ""
    if environments:
        env = environments[0]
        machine = (f"Machine: {env['cpu_count']} CPU cores ({env['machine']}), {env['gpus']} GPU, TensorFlow "
                   f"{env['tensorflow']}, Keras {env['keras']}.")
        if loads:
            machine += (f" The machine was shared: its 1-minute load average was {min(loads):.1f}–{max(loads):.1f} "
                        "when the cells started, so times are wall-clock on a busy machine.")
    cells_path = store.cells_dir.relative_to(out) if store.cells_dir.is_relative_to(out) else store.cells_dir
    lines = [
        "# Split-learning leakage by split depth",
        f"Generated by `python scripts/report.py` from {len(records)} stored cells in `{cells_path}/`; "
        "regenerate it rather than editing it. The cells were produced by:",
        "```\n" + "\n".join(commands) + "\n```" if commands else "(no command recorded)",
        machine,
        "How to read the tables: *depth k* means the client computes the reference net's layers 0..k, every conv, "
        "activation and pooling layer counted (UNSPLIT.md). The targets are the first test image of each class. "
        "MSE, PSNR and SSIM compare each reconstruction with its target (CIFAR-10 reconstructions are min-max "
        "normalised first, as the authors do) and are averaged over the targets. *Clone accuracy* is the test "
        "accuracy of `server(clone(x))`, the stolen client behind the real server, on the whole test split; "
        "*split accuracy* is that of `server(client(x))`; *agreement* is how often the two predict the same class; "
        "*untrained clone* is the clone accuracy of the fresh clone the attack starts from (nothing stolen yet). "
        "*Attack time* is the wall-clock time of the attack on all targets; *budget* Mx(I+M) is M rounds of I input "
        "steps and M model steps per target. Presets: `paper` is the authors' hyper-parameters, `better` drops the "
        "pull towards black, keeps pixels in [0, 1], slows the clone and speeds up x_hat (see `unsplit_tf/attacks/inversion.py`). "
        "Mode `sequential` attacks the targets one after another with one shared clone, as the authors' code; "
        "`batched` attacks all at once.",
    ]
    return "\n\n".join(line for line in lines if line)


def _dataset_section(dataset: str, series: list[Series], label_records: list[dict[str, Any]], store: ResultStore, out: Path) -> str:
    title = DATASET_TITLES.get(dataset, dataset)
    lines = [f"## {title}"]
    if series:
        first = series[0].records[0]
        lines.append(f"Data: {first['data']['source']}; {first['data']['train_images']:,} training and "
                     f"{first['data']['test_images']:,} test images.")
        budgets = ", ".join(sorted({one.budget for one in series}))
        targets = ", ".join(sorted({str(one.targets) for one in series}))
        lines.append(" ".join(_model_lines(series)) + f" Attack budget per target: {budgets}; {targets} targets.")
        lines.append("### Inversion and model stealing by depth")
        lines.append(inversion_table(series))
        lines.append(baselines_line(series))
        mse_figure, accuracy_figure = depth_curves(series)
        mse_path = save_figure(mse_figure, out / f"{dataset}_mse_by_depth.png")
        accuracy_path = save_figure(accuracy_figure, out / f"{dataset}_clone_accuracy_by_depth.png")
        grid_path = save_figure(depth_grid(store, series), out / f"{dataset}_depth_grid.png")
        lines.append(f"![{title}: MSE by depth]({mse_path.name}) ![{title}: clone accuracy by depth]({accuracy_path.name})")
        lines.append(f"![{title}: reconstructions at every depth]({grid_path.name})")
    for record in label_records:
        cell, training = record["cell"], record["training"]
        lines.append(f"### Label inference ({cell['samples']} training examples, batch size {cell['batch_size']}, seed {cell['seed']})")
        lines.append(
            f"A fresh (untrained) reference net is cut U-shaped: the client keeps layers 0..{cell['depth']} and the "
            f"output layer `{training['head']}` with the labels; labels are inferred during its first "
            f"{cell['samples']} training steps. `weight_gradient` is what the authors' code observes (the head's weight "
            "gradient, which a standard split-learning server never sees); `activation_gradient` is what a server "
            "really receives. Methods on activation gradients are told the label of the first example of each class "
            "(they cannot name classes otherwise); *relabelled accuracy* scores the best renaming of the inferred "
            f"classes. The paper reports {percent(PAPER_LABEL_ACCURACY)} label accuracy. "
            f"Time: {record['cell_seconds']:.0f} s for all methods."
        )
        lines.append(label_table(record))
    return "\n\n".join(lines)


def _model_lines(series: Sequence[Series]) -> list[str]:
    """One sentence per trained model (epochs, seed): its split accuracy, and its training time if it was trained in the sweep."""
    models: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for one in series:
        models.setdefault((one.epochs, one.seed), []).extend(record["model"] for record in one.records)
    sentences = []
    for (epochs, seed), found in sorted(models.items()):
        trained = next((model["train_seconds"] for model in found if model.get("train_seconds") is not None), None)
        how = f", trained in {trained:.0f} s" if trained is not None else " (loaded from the model cache)"
        sentences.append(f"Model ({epochs} epochs, seed {seed}): split test accuracy "
                         f"{percent(found[0]['split_test_accuracy'])}{how}.")
    return sentences


def _comparison_section(series: list[Series]) -> str:
    title = "## Fashion-MNIST: this port beside the authors' code"
    table = comparison_table(series)
    budget = budget_text(AUTHORS_CODE_CONDITIONS["budget"])
    if table is None:
        return (f"{title}\n\nNo stored cells match the authors' conditions yet. Run:\n\n```\npython scripts/sweep.py "
                f"--datasets f_mnist --epochs {AUTHORS_CODE_CONDITIONS['epochs']} --budget {budget.replace('(', '').replace(')', '')} "
                "--attack paper:sequential --attack better:batched\n```")
    ours = comparison_series(series)[0][1].records[0]["baselines"]
    checks = "; ".join(f"{BASELINE_TITLES[name]} {number(ours[name]['mean_mse'])} here, {number(value)} there"
                       for name, value in AUTHORS_CODE_BASELINES.items() if name in ours)
    return "\n\n".join([
        title,
        f"Same conditions as the authors' depth sweep in UNSPLIT.md: real Fashion-MNIST, {AUTHORS_CODE_CONDITIONS['epochs']} "
        f"training epochs, budget {budget} per target, the 10 class targets attacked one after another with one shared "
        "clone (`paper`, sequential); `better` under the same budget. The authors' SSIM was not measured (—). Their clone "
        "accuracy is on 2,000 test images, ours on the whole test split; they retrained per depth, we train once per seed (the "
        "weights do not depend on the cut).",
        table,
        f"The targets are the same images: the random-guess baselines agree ({checks}).",
    ])
