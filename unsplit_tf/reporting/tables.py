"""Markdown tables of typed runs: inversion by depth, label inference, the authors' comparison, defenses."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from unsplit_tf.defenses import named_defense
from unsplit_tf.records import NO_DEFENSE, Baselines, DefenseSetting, ImageScores, LabelRun
from unsplit_tf.reporting.grouping import AuxSeries, DefenseGroup, Series, observed_sample, varying_fields
from unsplit_tf.reporting.reference import reference_figures

BASELINE_TITLES = {"constant_grey": "grey 0.5 image", "uniform_random": "uniform noise", "dataset_mean": "dataset mean image"}
LABEL_COLUMNS = {"activation_gradient": "gradient matching", "direction_scoring": "direction scoring"}
GROUPING_METHOD = "activation_gradient"  # its relabelled accuracy: which examples share a label
NORM_METHOD = "norm_scoring"
AFFINE_HEADER, SHIFT_HEADER = "affine-aligned: MSE / SSIM", "shift-aligned: MSE / SSIM"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} s"


def ranges_text(numbers: Sequence[int]) -> str:
    """Whole numbers as runs: [1, 2, 3, 5] -> "1–3, 5" (depths, seeds)."""
    spans: list[list[int]] = []
    for value in sorted(numbers):
        if spans and value == spans[-1][-1] + 1:
            spans[-1].append(value)
        else:
            spans.append([value])
    return ", ".join(f"{span[0]}" if len(span) == 1 else f"{span[0]}–{span[-1]}" for span in spans)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def baselines_of(baselines: Baselines) -> dict[str, tuple[float, float]]:
    """(mean MSE, mean SSIM) of each no-information guess, by its name."""
    return {name: (getattr(baselines, name).mean_mse, getattr(baselines, name).mean_ssim) for name in BASELINE_TITLES}


# ---------------------------------------------------------------- inversion by depth


def inversion_table(series: Sequence[Series]) -> str:
    """One row per depth and series: reconstruction scores, clone quality, time."""
    varying = varying_fields(series)
    headers = ["depth", "cut after", "attack", "MSE", "PSNR (dB)", "SSIM", "beats mean image", AFFINE_HEADER, SHIFT_HEADER,
               "clone accuracy", "agreement", "untrained clone", "split accuracy", "attack time", "image-steps/s"]
    rows = []
    for one in series:
        for run in one.runs:
            scores, clone, before = run.headline.reconstruction, run.clone, run.clone_before_attack
            rows.append([
                run.victim.depth, f"`{run.victim.cut_layer}`", one.label(varying), number(scores.mean_mse),
                number(scores.mean_psnr, 1), number(scores.mean_ssim), run.headline.verdict_text(),
                affine_text(scores), shift_text(scores), percent(clone and clone.clone_accuracy),
                percent(clone and clone.agreement), percent(before and before.clone_accuracy),
                percent(run.victim.test_accuracy),
                seconds(run.timings.attack_seconds), number(run.timings.image_steps_per_second, 0),
            ])
    return markdown_table(headers, rows)


def baselines_line(series: Sequence[Series]) -> str:
    """The no-information guesses of the targets (the same for every run with the same targets)."""
    guesses = baselines_of(series[0].runs[0].headline.baselines)
    parts = [f"{BASELINE_TITLES[name]} MSE {number(mse)} / SSIM {number(ssim)}" for name, (mse, ssim) in guesses.items()]
    return "Guesses that use no leaked information, scored on the same targets: " + "; ".join(parts) + "."


def pair_text(mse: float | None, ssim: float | None) -> str:
    """"MSE / SSIM", the one format of every such pair in the report's tables; "—" where not scored."""
    return "—" if mse is None else f"{number(mse)} / {number(ssim)}"


def scores_text(scores: ImageScores | None) -> str:
    """"MEAN MSE / MEAN SSIM" of a set of images, "—" without one."""
    return "—" if scores is None else pair_text(scores.mean_mse, scores.mean_ssim)


def affine_text(scores: ImageScores) -> str:
    """"MSE / SSIM" after each image's best affine fit of intensities, "—" where not scored."""
    return pair_text(scores.mean_affine_aligned_mse, scores.mean_affine_aligned_ssim)


def shift_text(scores: ImageScores) -> str:
    """"MSE / SSIM" after the one small translation that fits all images best, naming it when it is not (0, 0);
    "—" where not scored."""
    if scores.mean_shift_aligned_mse is None:
        return "—"
    moved = f" at {scores.shift_name}" if scores.shift_name else ""
    return pair_text(scores.mean_shift_aligned_mse, scores.mean_shift_aligned_ssim) + moved


def aux_table(lines: Sequence[AuxSeries]) -> str:
    """One row per aux size and line: the targets' scores, and those of the observed sample beside its own mean image."""
    varying = varying_fields(lines)
    headers = ["attack", "depth", "aux images", "client's training images", "MSE", "SSIM", "beats mean image",
               AFFINE_HEADER, SHIFT_HEADER, "observed sample: MSE / SSIM", "its mean image: MSE / SSIM", "split accuracy",
               "clone accuracy"]
    rows = []
    for line in lines:
        for run in line.runs:
            head, observed = run.headline, observed_sample(run)
            rows.append([
                line.setting.label(varying), line.depth, f"{run.threat_model.auxiliary_images:,}",
                f"{run.victim.training.samples:,}" if run.victim.training else "—", number(head.reconstruction.mean_mse),
                number(head.reconstruction.mean_ssim), head.verdict_text(),
                affine_text(head.reconstruction), shift_text(head.reconstruction),
                scores_text(observed and observed.reconstruction), scores_text(observed and observed.baselines.dataset_mean),
                percent(run.victim.test_accuracy), percent(run.clone and run.clone.clone_accuracy),
            ])
    return markdown_table(headers, rows)


def label_table(run: LabelRun) -> str:
    headers = ["method", "observes", "labels given", "accuracy", "relabelled accuracy", "AUC", "evaluated", "chance"]
    rows = [[m.description, f"`{m.observation}`", m.known, percent(m.accuracy), percent(m.relabelled_accuracy),
             number(m.auc), m.evaluated, percent(m.chance)] for m in run.methods]
    return markdown_table(headers, rows)


# ---------------------------------------------------------------- beside the authors' code


def comparison_series(series: Sequence[Series]) -> list[tuple[str, Series]]:
    """Series run under the authors' conditions: the authors' preset and mode (every seed), then one `tuned` series.

    Empty when none of the authors' preset matches: then there is nothing to compare.
    """
    reference = reference_figures()

    def matches(one: Series) -> bool:
        s = one.setting
        return (s.family == "unsplit" and s.dataset == reference.dataset and s.epochs == reference.epochs
                and s.targets == reference.targets and s.budget == reference.budget)

    candidates = [one for one in series if matches(one)]
    papers = sorted((one for one in candidates if one.setting.preset == reference.preset and one.setting.mode == reference.mode),
                    key=lambda one: one.setting.seed)
    if not papers:
        return []
    named = [(f"{reference.preset} seed {one.setting.seed}" if len(papers) > 1 else reference.preset, one) for one in papers]
    tuned = [one for one in candidates if one.setting.preset == "tuned"]
    return named + ([(f"tuned ({tuned[0].setting.mode})", tuned[0])] if tuned else [])


def comparison_table(series: Sequence[Series]) -> str | None:
    """The authors' preset and the tuned one beside the authors' code, depth by depth; None if not run."""
    ours = comparison_series(series)
    if not ours:
        return None
    headers = (["depth", "MSE authors"] + [f"MSE {name}" for name, _ in ours] + [f"SSIM {name}" for name, _ in ours]
               + ["clone acc. authors"] + [f"clone acc. {name}" for name, _ in ours] + ["untrained clone ours"]
               + ["split acc. authors", "split acc. ours", "time authors"] + [f"time {name}" for name, _ in ours])
    rows, sums = [], {}
    for depth, authors in reference_figures().depths.items():
        found = [one.at(depth) for _, one in ours]
        first = found[0]
        values = {
            "mse": [authors.mse] + [r.headline.reconstruction.mean_mse if r else None for r in found],
            "ssim": [r.headline.reconstruction.mean_ssim if r else None for r in found],
            "clone": [authors.clone_accuracy] + [r.clone.clone_accuracy if r and r.clone else None for r in found],
            "untrained": [first.clone_before_attack.clone_accuracy if first and first.clone_before_attack else None],
            "split": [authors.split_accuracy, first.victim.test_accuracy if first else None],
            "time": [authors.seconds] + [r.timings.attack_seconds if r else None for r in found],
        }
        for name, column in values.items():
            for index, value in enumerate(column):
                sums.setdefault((name, index), []).append(value)
        rows.append(_comparison_row(str(depth), values))
    means: dict[str, list[float | None]] = {name: [] for name in ("mse", "ssim", "clone", "untrained", "split", "time")}
    for (name, _), column in sorted(sums.items()):
        means[name].append(None if None in column else float(np.mean(column)))
    rows.append(_comparison_row("mean", means))
    return markdown_table(headers, rows)


def _comparison_row(depth: str, values: dict[str, list[float | None]]) -> list[str]:
    return ([depth] + [number(v) for v in values["mse"]] + [number(v) for v in values["ssim"]]
            + [percent(v) for v in values["clone"] + values["untrained"]] + [percent(v) for v in values["split"]]
            + [seconds(v) for v in values["time"]])


# ---------------------------------------------------------------- defenses


def defense_name(setting: DefenseSetting) -> str:
    return setting.name.replace("_", " ")


def strength_text(setting: DefenseSetting) -> str:
    return "—" if setting.strength is None else f"{setting.strength:g}"


def strength_meanings(settings: Sequence[DefenseSetting]) -> str:
    """"name: what its strength means; ..." for the defenses among `settings` that have a strength."""
    meanings = {defense_name(s): named_defense(s.name).strength_meaning for s in settings if s != NO_DEFENSE}
    return "; ".join(f"{name}: {meaning}" for name, meaning in sorted(meanings.items()) if meaning)


def inversion_defense_table(group: DefenseGroup) -> str:
    """One row per defense and strength; the observed sample's scores too where a run has one (SDAR)."""
    observed = any(observed_sample(run) is not None for run in group.runs)
    rows = []
    for run in group.runs:
        head, defense, sample = run.headline, run.victim.defense, observed_sample(run)
        polarity_mse, polarity_ssim = head.either_polarity
        rows.append([defense_name(defense), strength_text(defense), percent(run.victim.test_accuracy),
                     number(head.reconstruction.mean_mse), number(head.reconstruction.mean_ssim),
                     pair_text(polarity_mse, polarity_ssim), affine_text(head.reconstruction),
                     shift_text(head.reconstruction)]
                    + ([scores_text(sample and sample.reconstruction)] if observed else [])
                    + [percent(run.clone and run.clone.clone_accuracy), number(run.distance_correlation),
                       seconds(run.timings.total_seconds)])
    return markdown_table(["defense", "strength", "split accuracy", "inversion MSE", "SSIM", "either polarity: MSE / SSIM",
                           AFFINE_HEADER, SHIFT_HEADER]
                          + (["observed sample: MSE / SSIM"] if observed else [])
                          + ["stolen clone accuracy", "dCor(x, z)", "run time"], rows)


def _method(run: LabelRun, method_id: str):
    return next((m for m in run.methods if m.id == method_id), None)


def label_defense_table(group: DefenseGroup) -> str:
    rows = []
    for run in group.runs:
        grouping, norm = _method(run, GROUPING_METHOD), _method(run, NORM_METHOD)
        rows.append([defense_name(run.victim.defense), strength_text(run.victim.defense), percent(run.victim.test_accuracy)]
                    + [percent(m.accuracy) if (m := _method(run, method_id)) else "-" for method_id in LABEL_COLUMNS]
                    + [percent(grouping.relabelled_accuracy) if grouping else "-", number(norm.auc) if norm else "-",
                       number(run.gradient_norm_median, 4)])
    return markdown_table(["defense", "strength", "model accuracy", *[f"label accuracy, {n}" for n in LABEL_COLUMNS.values()],
                           "gradient matching, relabelled", "norm scoring AUC", "median received ‖dL/da‖"], rows)

