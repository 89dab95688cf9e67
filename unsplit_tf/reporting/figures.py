"""The report's figures, drawn from typed runs; matplotlib is imported only here, when drawing."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from unsplit_tf.records import NO_DEFENSE, InversionRun, LabelRun
from unsplit_tf.reporting.grouping import (
    MODE_ORDER,
    AuxSeries,
    DefenseGroup,
    Series,
    observed_sample,
    title_of,
    varying_fields,
)
from unsplit_tf.reporting.reference import reference_figures
from unsplit_tf.reporting.tables import (
    BASELINE_TITLES,
    GROUPING_METHOD,
    LABEL_COLUMNS,
    comparison_series,
    defense_name,
    ranges_text,
)

REFERENCE_PREFIXES = ("guess:", "split model:", "authors' code:")  # drawn dashed: references, not this run's attacks
GRID_NAMES = {"sdar": "SDAR", "inverse_network": "inv. net"}  # row titles of the depth grid: short
_REFERENCE_KINDS = {"grey": "grey image", "mean image": "dataset mean", "split model": "split model"}


def _reference_colour(label: str) -> str | None:
    """The one colour `plots.REFERENCE_COLOURS` gives this kind of reference line in every figure, if it is one."""
    from unsplit_tf.plots import REFERENCE_COLOURS

    return next((REFERENCE_COLOURS[kind] for word, kind in _REFERENCE_KINDS.items() if word in label), None)


def depth_curves(series: Sequence[Series]):
    """Two figures: mean MSE against depth (with the grey and mean-image guesses), clone accuracy against depth. Series
    that differ only in their training seed are one line, their mean at each depth, shaded over their range."""
    from unsplit_tf.plots import curves

    groups = _seed_groups(series)
    varying = varying_fields([group[0] for group in groups])
    depths = sorted({depth for one in series for depth in one.depths})

    def column(one: Series, value: Callable[[InversionRun], float | None]) -> list[float]:
        found = [one.at(depth) for depth in depths]
        return [math.nan if run is None or value(run) is None else value(run) for run in found]

    def lines(value: Callable[[InversionRun], float | None]) -> tuple[dict[str, list[float]], dict]:
        means, bands = {}, {}
        for group in groups:
            name = _group_label(group, varying)
            table = np.array([column(one, value) for one in group], dtype=np.float64)
            found = ~np.isnan(table)
            means[name] = [float(table[found[:, i], i].mean()) if found[:, i].any() else math.nan for i in range(len(depths))]
            if len(group) > 1:
                bands[name] = tuple([float(pick(table[found[:, i], i])) if found[:, i].any() else math.nan
                                     for i in range(len(depths))] for pick in (np.min, np.max))
        return means, bands

    mse, mse_bands = lines(lambda r: r.headline.reconstruction.mean_mse)
    baselines = series[0].runs[0].headline.baselines
    for name in ("constant_grey", "dataset_mean"):
        mse[f"guess: {BASELINE_TITLES[name]}"] = [getattr(baselines, name).mean_mse] * len(depths)
    accuracy, accuracy_bands = lines(lambda r: r.clone and 100 * r.clone.clone_accuracy)
    if comparison_series(series):  # the authors' code ran under these series' conditions
        reference = reference_figures()
        authors = [reference.depths.get(depth) for depth in depths]
        label = f"authors' code: {reference.preset}/{reference.mode}"
        mse[label] = [a.mse if a else math.nan for a in authors]
        accuracy[label] = [100 * a.clone_accuracy if a else math.nan for a in authors]
    accuracy["split model: server(client(x))"] = column(series[0], lambda r: r.victim.test_accuracy and 100 * r.victim.test_accuracy)
    accuracy["guess: untrained clone"] = column(
        series[0], lambda r: r.clone_before_attack and 100 * r.clone_before_attack.clone_accuracy)
    title = title_of(series[0].setting.dataset)
    return (
        _mark_depths(curves(mse, x=depths, xlabel="split depth", ylabel="mean reconstruction MSE", title=f"{title}: inversion",
                            bands=mse_bands)),
        _mark_depths(curves(accuracy, x=depths, xlabel="split depth", ylabel="test accuracy through the server (%)",
                            title=f"{title}: stolen clone", bands=accuracy_bands)),
    )


def _seed_groups(series: Sequence[Series]) -> list[list[Series]]:
    """The series grouped by everything but their training seed, in their order."""
    groups: dict[object, list[Series]] = {}
    for one in series:
        groups.setdefault(dataclasses.replace(one.setting, seed=0), []).append(one)
    return list(groups.values())


def _group_label(group: Sequence[Series], varying: Sequence[str]) -> str:
    """One series' label; several seeds' label names them and says the line is their mean (at each depth, of the seeds
    run there)."""
    if len(group) == 1:
        return group[0].label(varying)
    seeds = ranges_text([one.setting.seed for one in group])
    return f"{group[0].label([name for name in varying if name != 'seed'])}, seeds {seeds}: mean, shaded range"


def _mark_depths(figure):
    """Depths are whole numbers: integer ticks, a marker per measured depth, references dashed, the legend beside."""
    from matplotlib.ticker import MaxNLocator

    axes = figure.axes[0]
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(bottom=0)
    for line in axes.get_lines():
        if line.get_label().startswith(REFERENCE_PREFIXES):
            line.set_linestyle("--")
            colour = _reference_colour(line.get_label())
            if colour is not None:
                line.set_color(colour)
        else:
            line.set_marker("o")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def _mode_rank(mode: str) -> int:
    return MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)


def grid_series(series: Sequence[Series]) -> list[Series]:
    """One series per attack for the depth grid: the one with the most depths; on a tie the authors' mode, the most aux."""
    def rank(one: Series) -> tuple:
        return len(one.runs), -_mode_rank(one.setting.mode), one.setting.aux

    chosen: dict[tuple[str, str], Series] = {}
    for one in series:
        name = (one.setting.family, one.setting.preset)
        if name not in chosen or rank(one) > rank(chosen[name]):
            chosen[name] = one
    return list(chosen.values())


def depth_grid(series: Sequence[Series]):
    """Originals on top, then the reconstructions at every depth (one row per depth and attack), each with its MSE."""
    from unsplit_tf.plots import rows_grid

    shown = grid_series(series)
    depths = sorted({depth for one in shown for depth in one.depths})
    first = shown[0].runs[0]
    rows, titles, captions = [first.arrays["originals"]], ["original"], [None]
    for depth in depths:
        for one in shown:
            run = one.at(depth)
            if run is None or "reconstructions" not in run.arrays:
                continue
            rows.append(run.arrays["reconstructions"])
            setting = one.setting
            name = (setting.preset if setting.family == "unsplit"
                    else f"{GRID_NAMES.get(setting.family, setting.family)}\naux {setting.aux}")
            titles.append(f"d{depth} {name}" if len(shown) > 1 else f"depth {depth}")
            captions.append([f"{mse:.3f}" for mse in run.headline.reconstruction.mse])
    rows = [np.asarray(row, np.float32) / 255 for row in rows]
    attacks = "; ".join(one.setting.label(("budget", "aux", "observations")) for one in shown)
    return rows_grid(rows, titles, col_labels=list(first.headline.targets.classes), captions=captions,
                     title=f"{title_of(first.data.name)}: reconstructions by split depth ({attacks}); caption: MSE")


def aux_curves(lines: Sequence[AuxSeries]):
    """MSE and SSIM against the aux images held, a line per (attack, depth): on the targets (solid) and on the
    observed sample where there is one (dotted), beside the targets' dataset-mean image (dashed)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    from unsplit_tf.plots import SERIES_COLOURS

    varying = varying_fields(lines)
    mean = lines[0].runs[0].headline.baselines.dataset_mean
    figure = Figure(figsize=(11.0, 4.2), layout="constrained")
    figure.suptitle(f"{title_of(lines[0].setting.dataset)}: auxiliary-data attacks by aux size")
    panels = (("mean reconstruction MSE", "mean_mse", mean.mean_mse), ("mean SSIM", "mean_ssim", mean.mean_ssim))
    for axes, (ylabel, field, level) in zip(figure.subplots(1, 2, squeeze=False)[0], panels):
        for line, colour in zip(lines, itertools.cycle(SERIES_COLOURS)):
            observed = [observed_sample(run) for run in line.runs]
            axes.plot(line.sizes, [getattr(run.headline.reconstruction, field) for run in line.runs], marker="o",
                      color=colour, label=line.label(varying))
            if any(evaluation is not None for evaluation in observed):
                axes.plot(line.sizes, [math.nan if e is None else getattr(e.reconstruction, field) for e in observed],
                          marker="s", markerfacecolor="none", linestyle=":", color=colour,
                          label=f"{line.label(varying)}, observed sample")
        axes.axhline(level, color=_reference_colour("mean image"), linestyle="--", linewidth=1,
                     label=f"guess: {BASELINE_TITLES['dataset_mean']}")
        axes.set_xscale("log")
        sizes = sorted({size for line in lines for size in line.sizes})
        axes.set_xticks(sizes, [f"{size:,}" for size in sizes])
        axes.xaxis.set_minor_locator(NullLocator())
        axes.set_xlabel("auxiliary images the server holds")
        axes.set_title(ylabel, fontsize="medium")
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


# ---------------------------------------------------------------- defenses


def inversion_tradeoff(group: DefenseGroup):
    """Inversion MSE (raw and either polarity) and stolen-clone accuracy against split accuracy, a curve per defense."""
    runs = group.runs
    panels = [
        ("inversion MSE (higher: less leaked)", lambda r: r.headline.reconstruction.mean_mse),
        ("inversion MSE, either polarity", lambda r: r.headline.either_polarity[0]),
        ("stolen clone accuracy (lower: less leaked)", lambda r: r.clone and r.clone.clone_accuracy),
    ]
    grey = runs[0].headline.baselines.constant_grey.mean_mse
    untrained = runs[0].clone_before_attack.clone_accuracy if runs[0].clone_before_attack else None
    lines = {0: (grey, "grey image"), 1: (grey, "grey image")}
    if untrained is not None:
        lines[2] = (untrained, "untrained clone")
    return _tradeoff_figure(runs, panels, "split model test accuracy", lines, group.title)


def label_tradeoff(group: DefenseGroup):
    """Label accuracy of each method (and gradient matching relabelled) against model accuracy, a curve per defense."""
    def score(method_id: str, field: str):
        return lambda run: next((getattr(m, field) for m in run.methods if m.id == method_id), None)

    panels = [(f"label accuracy, {title}", score(method_id, "accuracy")) for method_id, title in LABEL_COLUMNS.items()]
    panels.append(("label accuracy, gradient matching relabelled", score(GROUPING_METHOD, "relabelled_accuracy")))
    chance = group.runs[0].methods[0].chance
    return _tradeoff_figure(group.runs, panels, "U-shaped model test accuracy", {0: (chance, "chance"), 1: (chance, "chance")},
                            group.title)


def defense_grid(group: DefenseGroup):
    """The targets and their reconstructions under each defense, the MSE under each."""
    from unsplit_tf.plots import rows_grid

    pictured = [run for run in group.runs if "reconstructions" in run.arrays]
    rows, titles, captions = [pictured[0].arrays["originals"] / 255.0], ["original"], [None]
    for run in pictured:
        rows.append(run.arrays["reconstructions"] / 255.0)
        defense = run.victim.defense
        titles.append(defense_name(defense) + ("" if defense.strength is None else f" {defense.strength:g}"))
        captions.append([f"MSE {value:.3f}" for value in run.headline.reconstruction.mse])
    return rows_grid(rows, titles, col_labels=list(pictured[0].headline.targets.classes), captions=captions,
                     title=f"{group.title}: reconstructions under each defense")


def _tradeoff_figure(runs: Sequence[InversionRun] | Sequence[LabelRun], panels, xlabel: str,
                     reference_lines: dict[int, tuple[float, str]], title: str):
    """One panel per attack measure: a curve per defense through its strengths, from the undefended point."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    baseline = next((r for r in runs if r.victim.defense == NO_DEFENSE), None)
    defenses = list(dict.fromkeys(r.victim.defense.name for r in runs if r.victim.defense != NO_DEFENSE))
    figure = Figure(figsize=(5.5 * len(panels), 4.4), layout="constrained")
    figure.suptitle(title)
    for index, (axes, (ylabel, measure)) in enumerate(zip(figure.subplots(1, len(panels), squeeze=False)[0], panels)):
        for name in defenses:
            points = ([baseline] if baseline is not None else []) + [r for r in runs if r.victim.defense.name == name]
            xs = [r.victim.test_accuracy for r in points]
            ys = [measure(r) for r in points]
            (line,) = axes.plot(xs, ys, marker="o", label=name.replace("_", " "))
            for r, x, y in zip(points, xs, ys):
                if r.victim.defense.strength is not None:
                    axes.annotate(f"{r.victim.defense.strength:g}", (x, y), textcoords="offset points", xytext=(4, 4),
                                  fontsize="x-small", color=line.get_color())
        if baseline is not None:
            axes.plot([baseline.victim.test_accuracy], [measure(baseline)], marker="*", markersize=14, color="black",
                      linestyle="none", label="no defense")
        if index in reference_lines:
            level, name = reference_lines[index]
            axes.axhline(level, color=_reference_colour(name) or "grey", linestyle="--", linewidth=1, label=name)
        axes.xaxis.set_major_formatter(PercentFormatter(1.0))
        if "accuracy" in ylabel:
            axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.set_title(ylabel, fontsize="medium")
        axes.set_xlabel(xlabel)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    return figure
