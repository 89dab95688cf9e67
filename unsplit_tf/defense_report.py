"""The results of `scripts/defend.py` as tables (`defense_report`) and privacy-utility figures.

`scripts/defend.py` writes one JSON record per finished run into a results folder; these functions
read them back. A record has "side" ("inversion" or "labels"), "defense" ("none" for the undefended
baseline), "strength" (None where a defense has none), "strength_meaning", "test_accuracy", and the
attack results: "reconstruction", "baselines", "stolen_clone", "distance_correlation" (inversion), or
"labels" (a list of scored methods) and "gradient_norm_median" (labels). An inversion run may have
an .npz of the same name beside it with 8-bit "originals" and "reconstructions".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from unsplit_tf.report import markdown_table, number, percent

INVERSION_FIGURE = "privacy_utility_inversion.png"
LABEL_FIGURE = "privacy_utility_labels.png"
GRID_FIGURE = "reconstructions.png"
LABEL_METHODS = {
    "activation_gradient/gradient_matching": "gradient matching",
    "activation_gradient/direction_scoring": "direction scoring",
}
NORM_METHOD = "activation_gradient/norm_scoring"
GROUPING_METHOD = "activation_gradient/gradient_matching"  # its relabelled accuracy: which examples share a label


SETTING_FIELDS = ("dataset", "depth", "training", "attack", "train_images")


def load_defense_records(results_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every finished run's record in `results_dir`, the undefended baseline first, then by defense and strength.

    Raises ValueError if the runs of one side differ in anything but the defense (dataset, depth,
    training, attack budget): their numbers would not be comparable in one table.
    """
    folder = Path(results_dir)
    if not folder.is_dir():
        raise ValueError(f"no results folder at {folder}; run scripts/defend.py first")
    records = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    records = sorted((r for r in records if r.get("side") in ("inversion", "labels")), key=_record_order)
    for side in ("inversion", "labels"):
        settings = {json.dumps({f: r.get(f) for f in SETTING_FIELDS}, sort_keys=True): r["key"] for r in records if r["side"] == side}
        if len(settings) > 1:
            raise ValueError(
                f"the {side} runs in {folder} were made in {len(settings)} different settings (e.g. "
                f"{', '.join(list(settings.values())[:2])}); keep one setting per folder (scripts/defend.py --out)"
            )
    return records


def _record_order(record: dict[str, Any]) -> tuple:
    return (record["side"], record["defense"] != "none", record["defense"], record["strength"] or 0.0)


def defense_report(results_dir: str | os.PathLike, *, relative_to: str | os.PathLike | None = None) -> str:
    """Markdown tables of every defense run in `results_dir`, with links to its figures.

    relative_to: the folder of the markdown file that will hold the text (figure
    links are relative to it); default `results_dir` itself. Write the figures
    with `write_defense_figures`.
    """
    folder = Path(results_dir)
    records = load_defense_records(folder)
    base = Path(relative_to) if relative_to is not None else folder
    link = lambda name: Path(os.path.relpath(folder / name, base)).as_posix()  # noqa: E731
    inversion = [r for r in records if r["side"] == "inversion"]
    labels = [r for r in records if r["side"] == "labels"]
    parts = ["## Defenses at the cut: what they cost, what they stop", ""]
    if not records:
        return "\n".join(parts + ["No finished runs yet: run `python scripts/defend.py`.", ""])
    if inversion:
        parts += [_inversion_section(inversion, link(INVERSION_FIGURE)), ""]
        if (folder / GRID_FIGURE).exists():
            parts += [f"![The targets and their reconstructions under each defense, MSE under each]({link(GRID_FIGURE)})", ""]
    if labels:
        parts += [_label_section(labels, link(LABEL_FIGURE)), ""]
    return "\n".join(parts)


def _inversion_section(records: list[dict[str, Any]], figure: str) -> str:
    first = records[0]
    rows = [
        [
            _defense_name(r),
            _strength(r),
            percent(r["test_accuracy"]),
            number(r["reconstruction"]["mean_mse"]),
            number(r["reconstruction"]["mean_ssim"]),
            f"{number(r['either_polarity']['mean_mse'])} / {number(r['either_polarity']['mean_ssim'])}",
            percent(r["stolen_clone"]["clone_accuracy"]),
            number(r["distance_correlation"]),
            f"{r['seconds']:.0f} s",
        ]
        for r in records
    ]
    grey, mean = first["baselines"]["constant_0.5"], first["baselines"]["dataset_mean"]
    budget = first["attack"]
    return "\n".join(
        [
            "### Inversion and model stealing against defended activations",
            "",
            f"{first['dataset']} ({first['data_source']}), two-party split at depth {first['depth']} (cut after "
            f"'{first['cut_layer']}'), each model trained from the same initial weights for {_epochs(first)} "
            f"(batch {first['training']['batch_size']}, seed {first['training']['seed']}) with the defense at the cut, "
            f"then attacked with the `{budget['preset']}` preset, {budget['main_iters']} x ({budget['input_iters']} + "
            f"{budget['model_iters']}) steps, all {len(first['targets']['test_indices'])} targets (the first test image of each class) in "
            "one batch, as the defended client sends them. Split accuracy is on the test set with the defense active, as "
            "deployed; the stolen clone is scored through the real server on the test set; dCor(x, z) is the distance "
            "correlation between 512 test images and the activations the server receives. Higher MSE and lower SSIM "
            "mean a worse reconstruction (better privacy). A reconstruction can come out as a negative that shows the "
            "object plainly yet scores worse than a grey guess; \"either polarity\" scores, per image, the better of "
            "the reconstruction and its negative 1 - x, as an attacker who looks at it would.",
            "",
            markdown_table(
                ["defense", "strength", "split accuracy", "inversion MSE", "SSIM", "either polarity: MSE / SSIM",
                 "stolen clone accuracy", "dCor(x, z)", "run time"],
                rows,
            ),
            "",
            f"For scale, guesses that use no leaked information: a grey 0.5 image scores MSE {grey['mean_mse']:.3f} "
            f"(SSIM {grey['mean_ssim']:.3f}), the training set's mean image MSE {mean['mean_mse']:.3f} "
            f"(SSIM {mean['mean_ssim']:.3f}); the attack's untrained clone scores "
            f"{percent(first['clone_before_attack']['clone_accuracy'])} through the undefended server. Strengths: "
            + "; ".join(sorted({f"{_defense_name(r)}: {r['strength_meaning']}" for r in records if r["strength_meaning"]}))
            + ".",
            "",
            f"![Inversion MSE and stolen-clone accuracy against split accuracy, one curve per defense]({figure})",
        ]
    )


def _label_section(records: list[dict[str, Any]], figure: str) -> str:
    first = records[0]
    rows = []
    for r in records:
        scores = {entry["name"]: entry for entry in r["labels"]}
        rows.append(
            [_defense_name(r), _strength(r), percent(r["test_accuracy"])]
            + [percent(scores[name]["accuracy"]) if name in scores else "-" for name in LABEL_METHODS]
            + [percent(scores[GROUPING_METHOD]["relabelled_accuracy"]) if GROUPING_METHOD in scores else "-"]
            + [number(scores[NORM_METHOD]["auc"]) if NORM_METHOD in scores else "-", number(r["gradient_norm_median"], 4)]
        )
    scored = first["labels"][0]
    training = first["training"]
    return "\n".join(
        [
            "### Label inference against defended gradients",
            "",
            f"{first['dataset']}, U-shaped split at depth {first['depth']} (the client keeps the bottom and the output "
            f"layer, with the labels), trained from scratch for {_epochs(first)} at batch {training['batch_size']} "
            f"with the defense at the input of the client's head, so it perturbs the dL/da the server receives while the "
            f"head's own weights get the true gradient. The server attacks the first {first['attacked_samples']} training "
            f"examples (the first {training['attacked_steps']} steps) from dL/da, told the labels of the first "
            f"{_count(first['known_per_class'], 'example')} it meets in each class (left out of the scores; chance is "
            f"{percent(scored['chance'])}). \"Relabelled\" is the accuracy after the best renaming of the inferred "
            "classes: how well the attack groups examples by label, names aside. Model accuracy is the U-shaped "
            "model's on the test set after training; norm "
            "scoring only ranks examples (macro one-vs-rest AUC, 0.5 = chance). The weight-gradient observation "
            "(the UnSplit authors' assumption) is not shown: defenses on dL/da do not touch it, and a real split-learning "
            "server does not see it.",
            "",
            markdown_table(
                ["defense", "strength", "model accuracy", *[f"label accuracy, {n}" for n in LABEL_METHODS.values()],
                 "gradient matching, relabelled", "norm scoring AUC", "median received ‖dL/da‖"],
                rows,
            ),
            "",
            "Strengths: "
            + "; ".join(sorted({f"{_defense_name(r)}: {r['strength_meaning']}" for r in records if r["strength_meaning"]}))
            + ".",
            "",
            f"![Label accuracy against model accuracy, one curve per defense]({figure})",
        ]
    )


def write_defense_figures(results_dir: str | os.PathLike) -> list[Path]:
    """Draw the privacy-utility figures (attack quality against model accuracy, a curve per defense) and the
    reconstruction grid into `results_dir`; returns the files written."""
    from unsplit_tf.plots import rows_grid, save_figure  # matplotlib only when drawing

    folder = Path(results_dir)
    records = load_defense_records(folder)
    written = []
    inversion = [r for r in records if r["side"] == "inversion"]
    if inversion:
        panels = [
            ("inversion MSE (higher: less leaked)", lambda r: r["reconstruction"]["mean_mse"]),
            ("inversion MSE, either polarity", lambda r: r["either_polarity"]["mean_mse"]),
            ("stolen clone accuracy (lower: less leaked)", lambda r: r["stolen_clone"]["clone_accuracy"]),
        ]
        grey = inversion[0]["baselines"]["constant_0.5"]["mean_mse"]
        untrained = inversion[0]["clone_before_attack"]["clone_accuracy"]
        lines = {0: (grey, "grey image"), 1: (grey, "grey image"), 2: (untrained, "untrained clone")}
        figure = _tradeoff_figure(inversion, panels, "split model test accuracy", lines)
        written.append(save_figure(figure, folder / INVERSION_FIGURE))
        pictured = [(r, folder / f"{r['key']}.npz") for r in inversion if (folder / f"{r['key']}.npz").exists()]
        if pictured:
            with np.load(pictured[0][1]) as first:
                rows = [first["originals"] / 255.0]
            titles, captions = ["original"], [None]
            for record, path in pictured:
                with np.load(path) as images:
                    rows.append(images["reconstructions"] / 255.0)
                titles.append(f"{_defense_name(record)} {_strength(record)}".replace(" -", ""))
                captions.append([f"MSE {value:.3f}" for value in record["reconstruction"]["mse"]])
            grid = rows_grid(rows, titles, col_labels=inversion[0]["targets"]["labels"], captions=captions)
            written.append(save_figure(grid, folder / GRID_FIGURE))
    labels = [r for r in records if r["side"] == "labels"]
    if labels:
        panels = [(f"label accuracy, {title}", _method_score(name, "accuracy")) for name, title in LABEL_METHODS.items()]
        panels.append(("label accuracy, gradient matching relabelled", _method_score(GROUPING_METHOD, "relabelled_accuracy")))
        chance = labels[0]["labels"][0]["chance"]
        figure = _tradeoff_figure(labels, panels, "U-shaped model test accuracy", {0: (chance, "chance"), 1: (chance, "chance")})
        written.append(save_figure(figure, folder / LABEL_FIGURE))
    return written


def _method_score(name: str, score: str):
    def value(record: dict[str, Any]) -> float | None:
        return next((entry[score] for entry in record["labels"] if entry["name"] == name), None)

    return value


def _tradeoff_figure(records, panels, xlabel: str, reference_lines: dict[int, tuple[float, str]]):
    """One panel per attack measure: a curve per defense through its strengths, from the undefended point."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    baseline = next((r for r in records if r["defense"] == "none"), None)
    defenses = list(dict.fromkeys(r["defense"] for r in records if r["defense"] != "none"))
    figure = Figure(figsize=(5.5 * len(panels), 4.2), layout="constrained")
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    for index, (axes, (ylabel, measure)) in enumerate(zip(axes_list, panels)):
        for defense in defenses:
            runs = [r for r in records if r["defense"] == defense]
            points = ([baseline] if baseline is not None else []) + runs
            xs = [r["test_accuracy"] for r in points]
            ys = [measure(r) for r in points]
            (line,) = axes.plot(xs, ys, marker="o", label=_defense_name(runs[0]))
            for r, x, y in zip(points, xs, ys):
                if r["defense"] != "none" and r["strength"] is not None:
                    axes.annotate(f"{r['strength']:g}", (x, y), textcoords="offset points", xytext=(4, 4),
                                  fontsize="x-small", color=line.get_color())
        if baseline is not None:
            axes.plot([baseline["test_accuracy"]], [measure(baseline)], marker="*", markersize=14, color="black",
                      linestyle="none", label="no defense")
        if index in reference_lines:
            level, name = reference_lines[index]
            axes.axhline(level, color="grey", linestyle="--", linewidth=1, label=name)
        axes.xaxis.set_major_formatter(PercentFormatter(1.0))
        if "accuracy" in ylabel:
            axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    return figure


def _epochs(record: dict[str, Any]) -> str:
    return _count(record["training"]["epochs"], "epoch")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _defense_name(record: dict[str, Any]) -> str:
    return record["defense"].replace("_", " ")


def _strength(record: dict[str, Any]) -> str:
    return "—" if record["strength"] is None else f"{record['strength']:g}"
