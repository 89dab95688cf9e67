"""REPORT.md: a summary a newcomer understands, then the tables and figures, all regenerated from stored runs.

Nothing here runs an attack or loads a dataset: every number and picture comes
from the typed records of a `ResultStore`, so the report can be rebuilt at any
time and always matches the results it sits beside.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from unsplit_tf.records import NO_DEFENSE, DefenseSetting, InversionRun, LabelRun
from unsplit_tf.reporting import figures, tables
from unsplit_tf.reporting.grouping import (
    DATASET_TITLES,
    HOLDS_MEANING,
    NOT_APPLICABLE,
    AuxSeries,
    DefenseGroup,
    Series,
    aux_series,
    defense_groups,
    defense_holds,
    inversion_series,
    title_of,
    undefended_label_runs,
    varying_fields,
)
from unsplit_tf.reporting.reference import reference_figures
from unsplit_tf.reporting.rescoring import scored_guesses, with_aligned_scores
from unsplit_tf.scoring import SHIFT_RADIUS
from unsplit_tf.store import ResultStore

REPORT_NAME = "REPORT.md"
NOTES_NAME = "notes.md"
"""The hand-written findings beside a store's cells, included in its report."""
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:])/(?:[^\s/,;()'\"=]+/)+([^\s/,;()'\"=]+)")


def portable(text: str) -> str:
    """`text` with every absolute path of the machine a run happened on shortened to DIR/<last part>.

    Records keep the exact command and data source; a committed report must not show the folders of
    the machine that produced it.
    """
    return _ABSOLUTE_PATH.sub(r"DIR/\1", text)
Run = InversionRun | LabelRun


def write_report(store: ResultStore, out_dir: str | Path | None = None, *, notes: str | None = None) -> Path:
    """Write REPORT.md and its figures into `out_dir` (default: the store's root) from the stored runs.

    `notes` (markdown written by people, e.g. explaining differences from the
    paper) is included as the last section; by default the store's NOTES_NAME,
    if it has one, so that every command that rewrites the report keeps them.
    Returns the report's path.
    """
    out = Path(out_dir) if out_dir is not None else store.root
    if notes is None and (store.root / NOTES_NAME).is_file():
        notes = (store.root / NOTES_NAME).read_text()
    stored = store.runs()
    if not stored:
        raise ValueError(f"no finished cells in {store.cells_dir}; run a grid into it first (unsplit-tf sweep or "
                         f"unsplit-tf defend, with --results {store.root})")
    guesses = scored_guesses([run for run in stored if isinstance(run, InversionRun)])
    runs = [with_aligned_scores(run, guesses) if isinstance(run, InversionRun) else run for run in stored]
    rescored = sum(run is not before for run, before in zip(runs, stored))
    out.mkdir(parents=True, exist_ok=True)
    series_by_dataset = inversion_series(runs)
    aux_by_dataset = aux_series(series_by_dataset)
    labels_by_dataset = undefended_label_runs(runs)
    inversion_groups, label_groups = defense_groups(runs)
    order = list(DATASET_TITLES)
    datasets = sorted(set(series_by_dataset) | set(labels_by_dataset), key=lambda name: (name not in order, order.index(name)
                                                                                         if name in order else 0, name))
    parts = [
        "# Split-learning leakage: what a server learns, and what stops it",
        summary_paragraph(series_by_dataset, labels_by_dataset, inversion_groups, label_groups),
        _header(runs, store, out, rescored),
    ]
    parts += [_dataset_section(name, series_by_dataset.get(name, []), aux_by_dataset.get(name, []),
                               labels_by_dataset.get(name, []), out) for name in datasets]
    if inversion_groups or label_groups:
        parts.append(_defense_section(inversion_groups, label_groups, out))
    parts.append(_comparison_section(series_by_dataset.get(reference_figures().dataset, [])))
    if notes:
        parts.append("## Findings\n\n" + notes.strip())
    path = out / REPORT_NAME
    path.write_text("\n\n".join(part for part in parts if part) + "\n")
    return path


# ---------------------------------------------------------------- the summary for newcomers


def _best_by_depth(series: Sequence[Series]) -> dict[int, InversionRun]:
    """The run with the lowest mean MSE at each depth, over all `series`."""
    best: dict[int, InversionRun] = {}
    for one in series:
        for run in one.runs:
            depth = run.victim.depth
            if depth not in best or run.headline.reconstruction.mean_mse < best[depth].headline.reconstruction.mean_mse:
                best[depth] = run
    return best


def _leaking_and_deeper(best: dict[int, InversionRun]) -> tuple[list[int], list[int]]:
    """The depths whose best run beats the mean image, and the depths past the deepest of them that do not."""
    leaking = [depth for depth, run in best.items() if run.headline.beats_mean_image]
    return leaking, sorted(depth for depth in best if leaking and depth not in leaking and depth > max(leaking))


def _aligned_only(series: Sequence[Series], leaking: Sequence[int]) -> str:
    """Where only aligned scores beat the mean image, in words ("" where nowhere)."""
    aligned = sorted({run.victim.depth for one in series for run in one.runs
                      if run.victim.depth not in leaking and run.headline.beats_mean_image_aligned})
    return f" (at depth {tables.ranges_text(aligned)} they do once their intensities or position are aligned)" if aligned else ""


def _inversion_summary(dataset: str, series: Sequence[Series]) -> str:
    """What the data-oblivious attack (UnSplit) recovers, depth by depth, from the targets alone and, where stream
    runs are stored, from the training stream too; "" without UnSplit runs."""
    series = [one for one in series if one.setting.family == "unsplit"]
    on_targets = _targets_summary(dataset, [one for one in series if not one.setting.observations])
    on_stream = _stream_summary(dataset, [one for one in series if one.setting.observations], after=bool(on_targets))
    return " ".join(text for text in (on_targets, on_stream) if text)


def _targets_summary(dataset: str, series: Sequence[Series]) -> str:
    """What UnSplit recovers from the targets' activations alone, depth by depth; "" without such runs."""
    if not series:
        return ""
    best = _best_by_depth(series)
    leaking, deeper = _leaking_and_deeper(best)
    once_aligned = _aligned_only(series, leaking)
    title = title_of(dataset)
    mean_mse = next(iter(best.values())).headline.baselines.dataset_mean.mean_mse
    if not leaking:
        return (f"On {title}, the data-oblivious attack (a server that knows only the client's architecture and sees what "
                f"it sends) does not beat the dataset's mean image (MSE {mean_mse:.3f}) at any depth tried "
                f"({tables.ranges_text(list(best))}){once_aligned}.")
    top = min((best[d] for d in leaking), key=lambda run: run.headline.reconstruction.mean_mse)
    text = (f"On {title}, a server that knows only the client's architecture and sees what the client sends "
            f"reconstructs the client's inputs better than the dataset's mean image when the client ends at depth "
            f"{tables.ranges_text(leaking)} (best MSE {top.headline.reconstruction.mean_mse:.3f} at depth {top.victim.depth}, "
            f"against the mean image's {mean_mse:.3f})")
    if top.clone is not None:
        text += (f" and steals a copy of the client that reaches {tables.percent(top.clone.clone_accuracy)} through the "
                 f"server (the model: {tables.percent(top.clone.original_accuracy)})")
    if deeper:
        text += f"; from depth {deeper[0]} on its reconstructions no longer beat the mean image{once_aligned}"
    return text + "."


def _stream_summary(dataset: str, series: Sequence[Series], *, after: bool) -> str:
    """What UnSplit in stream mode recovers (one clone for the targets and the training examples the server received),
    named by its deepest leaking cut, the one a deployment would want to know about; "" without stream runs. `after`: a
    sentence on the targets-only attack comes first (this one then says "as well")."""
    if not series:
        return ""
    best = _best_by_depth(series)
    leaking, deeper = _leaking_and_deeper(best)
    counts = sorted({one.setting.observations for one in series})
    seen = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}–{counts[-1]:,}"
    subject = "Attacking as well" if after else f"On {title_of(dataset)}, attacking"
    watched = all(run.victim.training is not None for one in series for run in one.runs)  # else saved: a random draw
    examples = (f"the last {seen} training examples the client sent during training" if watched
                else f"{seen} training examples")
    text = f"{subject} the cut activations of {examples}, with one shared clone (stream mode), the same server "
    if not leaking:
        return (text + f"does not beat the mean image at any depth tried ({tables.ranges_text(list(best))})"
                f"{_aligned_only(series, leaking)}.")
    deepest = best[max(leaking)]
    scores = deepest.headline.reconstruction
    tried = _seeds_at(series, deepest.victim.depth)
    leaked = {one.setting.seed for one in series if (run := one.at(deepest.victim.depth)) and run.headline.beats_mean_image}
    seeds = f", where {len(leaked)} of {len(tried)} training seeds leak, the best" if len(tried) > 1 else ""
    text += (f"beats the mean image at depth {tables.ranges_text(leaking)} (at depth {deepest.victim.depth}{seeds}: MSE "
             f"{scores.mean_mse:.3f}, SSIM {scores.mean_ssim:.2f}")
    if deepest.clone is not None:
        text += (f", and a stolen copy of the client that reaches {tables.percent(deepest.clone.clone_accuracy)} through "
                 f"the server, the model {tables.percent(deepest.clone.original_accuracy)}")
    text += ")"
    if deeper:
        tried_at = {depth: len(_seeds_at(series, depth)) for depth in deeper}
        errors = [f"{best[depth].headline.reconstruction.mean_mse:.3f}"
                  + (f", the best of {tried_at[depth]} training seeds" if tried_at[depth] > 1 else "") for depth in deeper]
        separator = "; " if max(tried_at.values()) > 1 else ", "
        text += (f"; at depth {tables.ranges_text(deeper)} it does not (MSE {separator.join(errors)})"
                 f"{_aligned_only(series, leaking)}")
    return text + "."


def _seeds_at(series: Sequence[Series], depth: int) -> set[int]:
    """The training seeds of the runs at `depth`."""
    return {one.setting.seed for one in series if one.at(depth)}


def _auxiliary_summary(dataset: str, series: Sequence[Series]) -> str:
    """One sentence per auxiliary-data family: at which depths it beats the mean image, over every aux size tried."""
    sentences = []
    for family in dict.fromkeys(one.setting.family for one in series if one.setting.aux):
        mine = [one for one in series if one.setting.family == family]
        runs = [run for one in mine for run in one.runs]
        sizes = sorted({one.setting.aux for one in mine})
        held = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}–{sizes[-1]:,}"
        who = f"Holding {held} labelled {title_of(dataset)} training images as well, {mine[0].setting.attack_title()}"
        leaking = [run for run in runs if run.headline.beats_mean_image]
        if not leaking:
            sentences.append(f"{who} does not beat the mean image at any depth tried "
                             f"({tables.ranges_text(sorted({run.victim.depth for run in runs}))}).")
            continue
        top = min(leaking, key=lambda run: run.headline.reconstruction.mean_mse)
        sentences.append(f"{who} beats the mean image at depth {tables.ranges_text(sorted({r.victim.depth for r in leaking}))} "
                         f"(best MSE {top.headline.reconstruction.mean_mse:.3f} at depth {top.victim.depth} with "
                         f"{top.threat_model.auxiliary_images:,} images).")
    return " ".join(sentences)


def _label_summary(dataset: str, runs: Sequence[LabelRun]) -> str:
    real = [m for run in runs for m in run.methods if m.observation == "activation_gradient" and m.accuracy is not None]
    if not real:
        return ""
    top = max(real, key=lambda m: m.accuracy)
    return (f"From the gradients a real server receives it infers {tables.percent(top.accuracy)} of the "
            f"{title_of(dataset)} training labels it sees ({top.id.replace('_', ' ')}; chance "
            f"{tables.percent(top.chance)}).")


def _cheapest_stop(group: DefenseGroup, stops) -> list[str]:
    """Per defense in `group`, its cheapest setting for which `stops(run)`: "name s (cost N points)"."""
    baseline = group.baseline
    found = []
    for name in dict.fromkeys(run.victim.defense.name for run in group.runs if run.victim.defense != NO_DEFENSE):
        stopping = [run for run in group.runs if run.victim.defense.name == name and stops(run)]
        if not stopping or baseline is None or baseline.victim.test_accuracy is None:
            continue
        cheapest = max(stopping, key=lambda run: run.victim.test_accuracy or 0.0)
        cost = 100 * (baseline.victim.test_accuracy - (cheapest.victim.test_accuracy or 0.0))
        found.append(f"{tables.defense_name(cheapest.victim.defense)} at strength {tables.strength_text(cheapest.victim.defense)}"
                     f" (costing {cost:.1f} points of accuracy)")
    return found


def _defense_summary(inversion_groups: Sequence[DefenseGroup], label_groups: Sequence[DefenseGroup]) -> str:
    sentences = []
    for group in inversion_groups:
        stoppers = _cheapest_stop(group, defense_holds)
        tried = ", ".join(dict.fromkeys(tables.defense_name(r.victim.defense) for r in group.runs if r.victim.defense != NO_DEFENSE))
        sentences.append(f"Against the inversion ({group.title}), " + (
            "these defenses bring it down to the mean image: " + "; ".join(stoppers) if stoppers
            else f"none of the defenses tried ({tried}) stopped it at the strengths tried") + ".")
    for group in label_groups:
        def stops(run: LabelRun) -> bool:
            labelled = [m for m in run.methods if m.accuracy is not None]
            return bool(labelled) and max(m.accuracy for m in labelled) <= labelled[0].chance + 0.1

        stoppers = _cheapest_stop(group, stops)
        sentences.append(f"Against label inference ({group.title}), " + (
            "these keep every method within 10 points of chance: " + "; ".join(stoppers) if stoppers
            else "no defense tried kept the label attacks within 10 points of chance") + ".")
    return " ".join(sentences)


def summary_paragraph(series_by_dataset, labels_by_dataset, inversion_groups, label_groups) -> str:
    """One paragraph: what leaks, at which cut, what stops it, at what cost."""
    sentences = [text for name, series in series_by_dataset.items()
                 for text in (_inversion_summary(name, series), _auxiliary_summary(name, series))]
    sentences += [_label_summary(name, runs) for name, runs in labels_by_dataset.items()]
    sentences.append(_defense_summary(inversion_groups, label_groups) or
                     "No defense runs are stored yet, so this report does not say what stops the leaks.")
    return "**In short.** " + " ".join(sentence for sentence in sentences if sentence)


# ---------------------------------------------------------------- the sections


def _header(runs: Sequence[Run], store: ResultStore, out: Path, rescored: int) -> str:
    commands = sorted({portable(run.command) for run in runs if run.command})
    environment = runs[0].environment
    loads = [run.environment.load_average_1min for run in runs if run.environment.load_average_1min is not None]
    machine = (f"Machine: {environment.cpu_count} CPU cores ({environment.machine}), {environment.gpus} GPU, unsplit-tf "
               f"{environment.package}, TensorFlow {environment.tensorflow}, Keras {environment.keras}.")
    if loads:
        machine += (f" The machine's 1-minute load average was {min(loads):.1f}–{max(loads):.1f} when the runs started, "
                    "so times are wall-clock and comparable only roughly.")
    cells = store.cells_dir.relative_to(out) if store.cells_dir.is_relative_to(out) else store.cells_dir
    lines = [
        f"## How this report was made\n\nGenerated from {len(runs)} stored runs in `{cells}/`; regenerate it rather than "
        "editing it. The runs were produced by:",
        "```\n" + "\n".join(commands) + "\n```" if commands else "(no command recorded)",
        machine,
        "How to read the tables: *depth k* means the client computes the reference net's layers 0..k, every conv, "
        "activation and pooling layer counted (see docs/ALGORITHMS.md). The targets are the first test images of each "
        "class. MSE, PSNR and SSIM compare each reconstruction with its target (CIFAR-10 reconstructions are min-max "
        "normalised first, as the authors do) and are averaged over the targets; *beats mean image* means a lower MSE "
        "and a higher SSIM than the training set's mean image, a guess that uses no leaked information. The "
        "*affine-aligned* scores compare each reconstruction after its best fit a·x + b of intensities, the "
        f"*shift-aligned* ones all reconstructions after the one translation of at most {SHIFT_RADIUS} pixels per axis "
        "that fits them best (named when it is not none): a first convolution can absorb either, so an inverted, "
        "dimmed or moved picture is a leak that raw scores miss; *no (yes once aligned)* marks an attack that beats "
        "the mean image, aligned the same way, only once aligned (a defense holds only if neither kind of score "
        "beats it)"
        + (f". For {rescored} run{'s' * (rescored != 1)} recorded before records kept aligned scores, these are computed "
           "here from the stored 8-bit pictures, and the mean image's from another record of the same guess on the "
           "same targets"
           if rescored else "") + ". *Clone accuracy* "
        "is the test accuracy of `server(clone(x))`, the stolen client behind the real server; *split accuracy* is that "
        "of `server(client(x))`; *agreement* is how often the two predict the same class; *untrained clone* is the fresh "
        "clone the attack starts from. Presets: `paper` is the authors' hyper-parameters; `tuned` is the strongest "
        "data-oblivious setting (no pull towards black, pixels kept in [0, 1], a slower clone and a faster x_hat). Mode "
        "`sequential` attacks the targets one after another with one shared clone, as the authors' code; `batched` "
        "attacks all at once. `sdar` and `inverse_network` are attacks of a server that also holds *aux* labelled "
        "training images, held out of the client's training data (the client trains on the rest); SDAR trains alongside "
        "the client, and its *observed sample* is ten training images it decoded the moment their batch crossed the cut. "
        "A *stream*-mode UnSplit attack reads the smashed data of *N observed* training examples with one clone.",
    ]
    return "\n\n".join(lines)


def _model_lines(series: Sequence[Series]) -> list[str]:
    """One sentence per model: a user's saved one (attacked as saved) with its split accuracy; a trained one (epochs,
    seed, training images) with its split accuracy, and its training time if trained in the sweep (an
    auxiliary-data attack's client trains on what its aux images leave)."""
    saved = {one.setting.model: one.runs[0] for one in series if one.runs[0].victim.training is None}
    sentences = [f"Model {name} (a saved model, attacked as saved): split test accuracy "
                 f"{tables.percent(run.victim.test_accuracy)}." for name, run in sorted(saved.items())]
    models: dict[tuple[int, int, int], list[InversionRun]] = {}
    for one in series:
        if one.runs[0].victim.training is not None:
            models.setdefault((one.setting.epochs, one.setting.seed, one.setting.train_images), []).extend(one.runs)
    sizes = len({images for _, _, images in models}) > 1
    for (epochs, seed, images), runs in sorted(models.items()):
        trained = next((run.victim.training.seconds for run in runs if run.victim.training and run.victim.training.seconds), None)
        how = f", trained in {trained:.0f} s" if trained is not None else " (loaded from the model cache)"
        on = f", {images:,} training images" if sizes else ""
        sentences.append(f"Model ({epochs} epochs, seed {seed}{on}): split test accuracy "
                         f"{tables.percent(runs[0].victim.test_accuracy)}{how}.")
    return sentences


def _dataset_section(dataset: str, series: list[Series], aux_lines: list[AuxSeries], label_runs: list[LabelRun], out: Path
                     ) -> str:
    from unsplit_tf.plots import save_figure

    title = title_of(dataset)
    lines = [f"## {title}"]
    if series:
        data = series[0].runs[0].data
        lines.append(f"Data: {portable(data.source)}; {data.train_images:,} training and {data.test_images:,} test images.")
        budgets = ", ".join(sorted({one.setting.budget for one in series} - {NOT_APPLICABLE}))
        targets = ", ".join(sorted({str(one.setting.targets) for one in series}))
        sizes = ", ".join(f"{size:,}" for size in sorted({one.setting.aux for one in series} - {0}))
        lines.append(" ".join(_model_lines(series)) + (f" UnSplit's budget per target: {budgets};" if budgets else "")
                     + f" {targets} targets." + (f" Auxiliary images held by the server: {sizes}." if sizes else ""))
        lines += ["### Inversion and model stealing by depth", tables.inversion_table(series), tables.baselines_line(series)]
        mse_figure, accuracy_figure = figures.depth_curves(series)
        mse_path = save_figure(mse_figure, out / f"{dataset}_mse_by_depth.png")
        accuracy_path = save_figure(accuracy_figure, out / f"{dataset}_clone_accuracy_by_depth.png")
        lines.append(f"![{title}: MSE by depth]({mse_path.name}) ![{title}: clone accuracy by depth]({accuracy_path.name})")
        if any("reconstructions" in run.arrays for one in series for run in one.runs):
            grid_path = save_figure(figures.depth_grid(series), out / f"{dataset}_depth_grid.png")
            lines.append(f"![{title}: reconstructions at every depth]({grid_path.name})")
    if aux_lines:
        lines += ["### Auxiliary-data attacks by aux size",
                  "The same attack at the same depth given more or fewer labelled auxiliary images (held out of the "
                  "client's training data): the targets' scores, and SSIM beside MSE; the observed sample is scored "
                  "against its own mean-image guess.", tables.aux_table(aux_lines)]
        aux_path = save_figure(figures.aux_curves(aux_lines), out / f"{dataset}_by_aux_size.png")
        lines.append(f"![{title}: MSE and SSIM by aux size]({aux_path.name})")
    for run in label_runs:
        training = run.victim.training
        lines.append(f"### Label inference ({run.samples} training examples, batch size {run.batch_size}, seed {training.seed})")
        lines.append(
            f"A fresh (untrained) reference net is cut U-shaped: the client keeps layers 0..{run.victim.depth} and the "
            "output layer with the labels; labels are inferred during its first training steps. `weight_gradient` is what "
            "the authors' code observes (the head's weight gradient, which a standard split-learning server never sees); "
            "`activation_gradient` is what a server really receives. Methods on activation gradients are told the label "
            "of the first example of each class (they cannot name classes otherwise); *relabelled accuracy* scores the "
            f"best renaming of the inferred classes. The paper reports "
            f"{tables.percent(reference_figures().paper_label_accuracy)} label accuracy. "
            f"Time: {run.timings.total_seconds:.0f} s for all methods.")
        lines.append(tables.label_table(run))
    return "\n\n".join(lines)


ATTACK_STORIES = {
    "unsplit": "then attacked by UnSplit ({label}) on all {targets} targets as the defended client sends them, its clone "
               "of the client's undefended architecture",
    "sdar": "while SDAR, holding {aux:,} labelled auxiliary images, trained its simulator and decoder on every batch the "
            "defended client sent; it then decodes all {targets} targets as the defended client sends them, and is also "
            "scored on a sample of the training batches it observed",
    "inverse_network": "then attacked by an inverse network fitted through the server on {aux:,} labelled auxiliary "
                       "images, decoding all {targets} targets as the defended client sends them",
}
"""How each family meets a defended victim, for the defense section (formatted with label, aux and targets)."""


def defense_verdicts(groups: Sequence[DefenseGroup]) -> list[str]:
    """Per dataset and depth, one sentence per defense and strength: against which attacks it holds (`defense_holds`)."""
    places: dict[tuple[str, int], list[DefenseGroup]] = {}
    for group in groups:
        places.setdefault((group.setting.dataset, group.runs[0].victim.depth), []).append(group)
    paragraphs = []
    for (dataset, depth), members in places.items():
        verdicts: dict[DefenseSetting, list[tuple[str, bool]]] = {}
        for group in members:
            kin = [other for other in members if other.setting.family == group.setting.family]
            attack = group.setting.attack_title(varying_fields(kin) if len(kin) > 1 else None)
            for run in group.runs:
                if run.victim.defense != NO_DEFENSE:
                    verdicts.setdefault(run.victim.defense, []).append((attack, defense_holds(run)))
        ordered = sorted(verdicts.items(), key=lambda item: (item[0].name, item[0].strength or 0.0))
        paragraphs.append(f"**{title_of(dataset)}, depth {depth}.** " + " ".join(_verdict(*item) for item in ordered))
    return paragraphs


def _verdict(defense: DefenseSetting, found: Sequence[tuple[str, bool]]) -> str:
    """"Nopeek 3 holds against UnSplit but not against SDAR." from (attack, holds) pairs."""
    def listed(names: list[str], word: str) -> str:
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" {word} {names[-1]}"

    holds, fails = [name for name, held in found if held], [name for name, held in found if not held]
    name = tables.defense_name(defense) + ("" if defense.strength is None else f" {tables.strength_text(defense)}")
    text = (f"{name} holds against {listed(holds, 'and')}" + (f" but not against {listed(fails, 'or')}" if fails else "")
            if holds else f"{name} does not hold against {listed(fails, 'or')}")
    return text[0].upper() + text[1:] + "."


def _defense_section(inversion_groups: Sequence[DefenseGroup], label_groups: Sequence[DefenseGroup], out: Path) -> str:
    from unsplit_tf.plots import save_figure

    lines = ["## Defenses at the cut: what they cost, what they stop"]
    if inversion_groups:
        lines.append(f"Against the inversion attacks, a defense *holds* when {HOLDS_MEANING}.")
        lines += defense_verdicts(inversion_groups)
    for number, group in enumerate(inversion_groups, start=1):
        first = group.baseline or group.runs[0]
        training, head = first.victim.training, first.headline
        grey, mean = head.baselines.constant_grey, head.baselines.dataset_mean
        story = ATTACK_STORIES[group.setting.family].format(
            label=group.setting.attack_label, aux=group.setting.aux, targets=len(head.targets.indices))
        lines.append(f"### Inversion and model stealing against defended activations ({group.title})")
        lines.append(
            f"{title_of(first.data.name)} ({portable(first.data.source)}), two-party split at depth {first.victim.depth} "
            f"(cut after `{first.victim.cut_layer}`), each model trained from the same initial weights"
            + (f" for {training.epochs} epochs (batch {training.batch_size}, seed {training.seed}, {training.samples:,} "
               "images)" if training else "")
            + f" with the defense at the cut, {story}. Split accuracy is on the test set with the defense active, as "
            "deployed; dCor(x, z) is the distance correlation between test images and what the server receives. Higher "
            "MSE and lower SSIM mean better privacy. "
            "\"Either polarity\" scores, per image, the better of the reconstruction and its negative 1 - x, as an attacker "
            "who looks at it would.")
        lines.append(tables.inversion_defense_table(group))
        before = first.clone_before_attack
        lines.append(
            f"For scale: a grey 0.5 image scores MSE {grey.mean_mse:.3f} (SSIM {grey.mean_ssim:.3f}), the training set's "
            f"mean image MSE {mean.mean_mse:.3f} (SSIM {mean.mean_ssim:.3f})"
            + (f"; the attack's untrained clone scores {tables.percent(before.clone_accuracy)}" if before else "")
            + ". Strengths: " + tables.strength_meanings([run.victim.defense for run in group.runs]) + ".")
        figure = save_figure(figures.inversion_tradeoff(group), out / f"defenses_inversion_{number}.png")
        lines.append(f"![Inversion against split accuracy, one curve per defense]({figure.name})")
        if any("reconstructions" in run.arrays for run in group.runs):
            grid = save_figure(figures.defense_grid(group), out / f"defenses_reconstructions_{number}.png")
            lines.append(f"![The targets and their reconstructions under each defense]({grid.name})")
    for number, group in enumerate(label_groups, start=1):
        first = group.baseline or group.runs[0]
        training = first.victim.training
        chance = first.methods[0].chance
        lines.append(f"### Label inference against defended gradients ({group.title})")
        lines.append(
            f"{title_of(first.data.name)}, U-shaped split at depth {first.victim.depth} (the client keeps the "
            f"bottom and the output layer, with the labels), trained from scratch on {training.samples:,} images for "
            f"{training.epochs} epochs at batch {training.batch_size} with the defense at the input of the client's head, "
            "so it perturbs the dL/da the server receives while the head's own weights get the true gradient. The server "
            f"attacks the first {first.samples} training examples from dL/da, told the labels of the first example of each "
            f"class (left out of the scores; chance is {tables.percent(chance)}). Model accuracy is on the test set after "
            "training; norm scoring only ranks examples (macro one-vs-rest AUC, 0.5 = chance).")
        lines.append(tables.label_defense_table(group))
        lines.append("Strengths: " + tables.strength_meanings([run.victim.defense for run in group.runs]) + ".")
        figure = save_figure(figures.label_tradeoff(group), out / f"defenses_labels_{number}.png")
        lines.append(f"![Label accuracy against model accuracy, one curve per defense]({figure.name})")
    return "\n\n".join(lines)


def _comparison_section(series: list[Series]) -> str:
    reference = reference_figures()
    title = f"## {title_of(reference.dataset)}: this port beside the authors' code"
    table = tables.comparison_table(series)
    if table is None:
        budget = reference.budget.replace("(", "").replace(")", "")
        return (f"{title}\n\nNo stored cells match the authors' conditions yet. Run:\n\n```\npython scripts/sweep.py "
                f"--datasets {reference.dataset} --epochs {reference.epochs} --budget {budget} "
                f"--attack {reference.preset}:{reference.mode} --attack tuned:batched\n```")
    ours = tables.baselines_of(tables.comparison_series(series)[0][1].runs[0].headline.baselines)
    checks = "; ".join(f"{tables.BASELINE_TITLES[name]} {tables.number(ours[name][0])} here, {tables.number(value)} there"
                       for name, value in reference.baselines_mse.items() if name in ours)
    return "\n\n".join([
        title,
        f"{reference.about} Ours under the same conditions: `{reference.preset}` {reference.mode}, and `tuned` under the same "
        "budget. Their clone accuracy is on 2,000 test images, ours on the whole test split; they retrained per depth, we "
        "train once per seed (the weights do not depend on the cut).",
        table,
        f"The targets are the same images: the no-information guesses agree ({checks}).",
    ])
