"""The report with several attack families: depth series per family and aux size, aux-size series, defense verdicts."""

import dataclasses
import json

import pytest
from matplotlib.collections import LineCollection

from fake_runs import inversion_run
from unsplit_tf.records import DefenseSetting
from unsplit_tf.reporting import aux_series, defense_groups, defense_holds, inversion_series, write_report
from unsplit_tf.reporting.document import defense_verdicts, summary_paragraph
from unsplit_tf.reporting.grouping import varying_fields
from unsplit_tf.reporting.figures import depth_curves
from unsplit_tf.store import ResultStore
from unsplit_tf.sweep import InversionCell

NOPEEK, NOISE = DefenseSetting("nopeek", 3.0), DefenseSetting("gaussian_noise", 0.5)


def cell(depth: int, attack: str = "unsplit", aux: int = 0, defense: DefenseSetting = DefenseSetting(), **fields
         ) -> InversionCell:
    return InversionCell("f_mnist", "fake", depth, defense, attack=attack, aux=aux, targets=3, **fields)


def store_of(tmp_path, runs) -> ResultStore:
    store = ResultStore(tmp_path / "results")
    for run in runs:
        store.save(run)
    return store


def family_runs(sdar_sizes=(600, 6000)) -> list:
    """UnSplit (batched and stream), SDAR at each of `sdar_sizes`, the inverse network at one size; depths 1 and 2."""
    runs = []
    for depth in (1, 2):
        runs.append(inversion_run(cell(depth)))
        runs.append(inversion_run(cell(depth, mode="stream"), observed_examples=1000))
        runs += [inversion_run(cell(depth, "sdar", aux)) for aux in sdar_sizes]
        runs.append(inversion_run(cell(depth, "inverse_network", 6000)))
    return runs


def test_a_report_of_an_empty_store_says_which_verbs_fill_it(tmp_path):
    with pytest.raises(ValueError, match=r"no finished cells .* \(unsplit-tf sweep or unsplit-tf defend, with --results "):
        write_report(store_of(tmp_path, []))


def test_depth_series_keep_aux_sizes_apart_and_their_labels_say_them():
    (series,) = inversion_series(family_runs()).values()
    labels = [one.label(["aux", "observations"]) for one in series]
    assert labels == ["tuned/batched", "tuned/stream, 1000 observed", "sdar, aux 600", "sdar, aux 6000",
                      "inverse_network, aux 6000"]
    assert all(one.depths == [1, 2] for one in series)  # one run per depth: no aux size mixed into another's line
    assert [run.threat_model.auxiliary_images for run in series[3].runs] == [6000, 6000]
    mse, _ = depth_curves(series)  # one line per family and aux size, beside the mean image
    drawn = [line.get_label() for line in mse.axes[0].get_lines()]
    assert drawn == labels + ["guess: grey 0.5 image", "guess: dataset mean image"]


def test_a_setting_run_on_several_seeds_is_one_line_of_their_mean_shaded_over_their_range():
    runs = [inversion_run(cell(depth)) for depth in (1, 2)]  # one seed: its own line, as before
    runs += [inversion_run(cell(depth, mode="stream", observations=500, seed=seed), observed_examples=500, mse=mse)
             for depth, seed, mse in ((1, 0, 0.02), (2, 0, 0.04), (2, 1, 0.08), (2, 2, 0.06))]
    mse, _ = depth_curves(inversion_series(runs)["f_mnist"])
    lines = {line.get_label(): line for line in mse.axes[0].get_lines()}
    assert "tuned/batched" in lines
    mean = lines["tuned/stream, 500 observed, seeds 0–2: mean, shaded range"]
    assert list(mean.get_ydata()) == pytest.approx([0.02, 0.06])  # depth 1: seed 0 alone; depth 2: the mean of three
    spans = [list(segment[:, 1]) for collection in mse.axes[0].collections if isinstance(collection, LineCollection)
             for segment in collection.get_segments()]
    assert [0.04, 0.08] in [pytest.approx(span) for span in spans]  # the range at depth 2, drawn


def test_the_summary_tells_the_stream_attack_apart_from_the_targets_only_one_and_names_its_deepest_leak():
    # the fakes' mean image: 0.088 / 0.2; the targets-only attack beats it at depths 1-2, the stream attack at 1-4
    runs = [inversion_run(cell(depth), mse=0.02 if depth < 3 else 0.12, ssim=0.6 if depth < 3 else 0.1) for depth in range(1, 6)]
    runs += [inversion_run(cell(depth, mode="stream", observations=5000), observed_examples=5000,
                           mse=0.03 if depth < 5 else 0.15, ssim=0.5 if depth < 5 else 0.05, clone=0.81 - 0.01 * depth)
             for depth in range(1, 6)]
    summary = summary_paragraph(inversion_series(runs), {}, [], [])
    assert ("reconstructs the client's inputs better than the dataset's mean image when the client ends at depth 1–2 "
            "(best MSE 0.020 at depth 1") in summary
    assert "from depth 3 on its reconstructions no longer beat the mean image" in summary
    assert ("Attacking as well the cut activations of the last 5,000 training examples the client sent during training, "
            "with one shared clone (stream mode), the same server beats the mean image at depth 1–4 (at depth 4: MSE "
            "0.030, SSIM 0.50, and a stolen copy of the client that reaches 77.0 % through the server, the model 86.0 %); "
            "at depth 5 it does not (MSE 0.150).") in summary
    alone = summary_paragraph(inversion_series(runs[5:]), {}, [], [])  # stream runs only: the sentence names the data
    assert "On Fashion-MNIST, attacking the cut activations of the last 5,000" in alone
    saved = [dataclasses.replace(run, victim=dataclasses.replace(run.victim, training=None)) for run in runs[5:]]
    other_seed = inversion_run(cell(4, mode="stream", observations=5000, seed=1), observed_examples=5000, mse=0.15, ssim=0.05)
    assert ("at depth 1–4 (at depth 4, where 1 of 2 training seeds leak, the best: MSE 0.030, SSIM 0.50"
            in summary_paragraph(inversion_series([*runs, other_seed]), {}, [], []))
    deeper_seeds = [inversion_run(cell(5, mode="stream", observations=5000, seed=seed), observed_examples=5000, mse=mse, ssim=0.05)
                    for seed, mse in ((1, 0.2), (2, 0.14))]  # no seed leaks at depth 5: the best of three is named as such
    assert "at depth 5 it does not (MSE 0.140, the best of 3 training seeds)." in summary_paragraph(
        inversion_series([*runs, *deeper_seeds]), {}, [], [])
    assert "attacking the cut activations of 5,000 training examples, with" in summary_paragraph(
        inversion_series(saved), {}, [], [])  # a saved model is observed on a random draw, not a watched epoch


def test_one_and_three_restart_runs_of_a_preset_are_two_series_that_say_so():
    three = inversion_run(cell(2))
    one = dataclasses.replace(three, attack=dataclasses.replace(three.attack, config={**three.attack.config, "restarts": 1}))
    series = inversion_series([three, one])["f_mnist"]
    assert [line.label(varying_fields(series)) for line in series] == ["tuned/batched, 1 restart", "tuned/batched"]


def test_runs_of_a_preset_with_other_settings_are_their_own_series_that_say_them():
    changes = ({}, {"tv_norm": "l1", "lambda_tv": 0.675}, {"polish_iters": 0, "refit_iters": 50})
    runs = [inversion_run(cell(depth, **settings)) for depth in (1, 2) for settings in changes]
    series = inversion_series(runs)["f_mnist"]
    assert sorted(line.label(varying_fields(series)) for line in series) == [
        "tuned/batched", "tuned/batched, l1 TV 0.675", "tuned/batched, polish 0, refit 50"]
    assert all(line.depths == [1, 2] for line in series)
    same = inversion_series([inversion_run(cell(1, lambda_tv=0.1))])["f_mnist"]  # the preset's own weight: no change
    assert same[0].setting.changes == ""


def test_sdar_runs_with_other_settings_are_their_own_series_that_say_them():
    runs = [inversion_run(cell(depth, "sdar", 600, **settings)) for depth in (1, 2)
            for settings in ({}, {"simulator_steps": 20, "lambda_ssim": 0.0}, {"simulator_lr": 3e-3},
                             {"feature_memory": 512, "mmd_class_width": 1.0}, {"mmd_class_width": 0.0})]
    series = inversion_series(runs)["f_mnist"]
    assert sorted(line.label(varying_fields(series)) for line in series) == [
        "sdar", "sdar, 20 simulator steps, SSIM weight 0", "sdar, class-blind MMD", "sdar, feature memory 512, class-wise MMD 1",
        "sdar, simulator learning rate 0.003"]


def test_an_old_record_without_observed_examples_loads_and_groups_as_none_observed(tmp_path):
    run = inversion_run(cell(2))
    stored = run.to_dict()
    del stored["threat_model"]["observed_examples"]  # what a record written before the field existed holds
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / f"{run.key}.json").write_text(json.dumps(stored))
    (loaded,) = ResultStore(tmp_path).runs()
    assert loaded.threat_model.observed_examples == 0
    (series,) = inversion_series([loaded])["f_mnist"]
    assert series.setting.observations == 0 and series.setting.aux == 0


def test_the_aux_table_and_figure_appear_with_two_aux_sizes(tmp_path):
    store = store_of(tmp_path, family_runs())
    lines = aux_series(inversion_series(store.runs()))["f_mnist"]
    assert [(line.label(), line.sizes) for line in lines] == [("sdar, depth 1", [600, 6000]), ("sdar, depth 2", [600, 6000])]
    report = write_report(store).read_text()
    section = report.split("### Auxiliary-data attacks by aux size")[1].split("\n## ")[0]
    rows = [row for row in section.splitlines() if row.startswith("| sdar")]
    # depth 1, aux 600: MSE 0.02 + 3/600 + 0.001; its observed sample half that, beside its own mean image
    # (then its aligned scores, computed from the made-up stored pictures)
    assert rows[0].startswith("| sdar | 1 | 600 | 59,400 | 0.026 | 0.974 | yes | ")
    assert rows[0].split(" | ")[9:11] == ["0.013 / 0.987", "0.090 / 0.250"]
    assert len(rows) == 4 and "inverse_network" not in section  # one aux size: no line
    assert (tmp_path / "results" / "f_mnist_by_aux_size.png").stat().st_size > 1000
    assert "(f_mnist_by_aux_size.png)" in report


def test_one_aux_size_draws_no_aux_series(tmp_path):
    store = store_of(tmp_path, family_runs(sdar_sizes=(6000,)))
    assert aux_series(inversion_series(store.runs())) == {}
    report = write_report(store).read_text()
    assert "by aux size" not in report and not (tmp_path / "results" / "f_mnist_by_aux_size.png").exists()
    assert "| 1 | `layer1` | sdar, aux 6000 |" in report  # still in the depth table, aux said


def test_the_holds_rule_needs_mse_no_lower_and_ssim_no_higher_on_every_evaluation():
    # the fakes' dataset-mean image scores MSE 0.088 / SSIM 0.2 on the targets, 0.09 / 0.25 on SDAR's observed sample
    assert defense_holds(inversion_run(cell(2), mse=0.088, ssim=0.2))  # as good as the mean image: nothing leaked beyond it
    assert not defense_holds(inversion_run(cell(2), mse=0.2, ssim=0.3))  # worse MSE but more structure than the mean image
    assert not defense_holds(inversion_run(cell(2), mse=0.05, ssim=0.1))
    assert defense_holds(inversion_run(cell(2, "sdar", 6000), mse=0.2, ssim=0.1, observed=(0.2, 0.1)))
    assert not defense_holds(inversion_run(cell(2, "sdar", 6000), mse=0.2, ssim=0.1, observed=(0.02, 0.8)))



def test_a_defense_whose_pictures_come_back_as_negatives_does_not_hold():
    """Raw scores say the attack failed; aligned (as an attacker would look at them) the garments are all there."""
    import dataclasses

    import numpy as np

    from unsplit_tf.records import Baselines, ImageScores
    from unsplit_tf.scoring import baseline_scores, reconstruction_scores

    x = np.zeros((3, 16, 16, 1), np.float32)
    for index in range(3):
        x[index, 3 : 10 + index, 4 : 12 - index] = 0.6 + 0.1 * index
    guesses = {name: ImageScores.of(score) for name, score in baseline_scores(x, mean_image=x.mean(axis=0)).items()}
    run = inversion_run(cell(2))
    head = dataclasses.replace(
        run.headline, reconstruction=ImageScores.of(reconstruction_scores(x, 1.0 - x)),
        baselines=Baselines(guesses["constant_0.5"], guesses["uniform_random"], guesses["dataset_mean"]))
    raw_only = dataclasses.replace(head, reconstruction=ImageScores(*(getattr(head.reconstruction, name)
                                                                      for name in ("mse", "psnr", "ssim"))))
    assert defense_holds(dataclasses.replace(run, evaluations=(raw_only,)))  # what raw scores alone would say
    assert not defense_holds(dataclasses.replace(run, evaluations=(head,)))

@pytest.fixture
def defended():
    """NoPeek 3 stops UnSplit but not SDAR; gaussian noise 0.5 stops neither (SDAR only on its observed sample)."""
    runs = [inversion_run(cell(2)), inversion_run(cell(2, "sdar", 6000))]
    runs += [inversion_run(cell(2, defense=NOPEEK), mse=0.2, ssim=0.1),
             inversion_run(cell(2, "sdar", 6000, NOPEEK), mse=0.03),
             inversion_run(cell(2, defense=NOISE), mse=0.05, ssim=0.1),
             inversion_run(cell(2, "sdar", 6000, NOISE), mse=0.2, ssim=0.1, observed=(0.03, 0.7))]
    return runs


def test_each_defended_group_is_one_attack_family(defended):
    groups, _ = defense_groups(defended)
    assert [group.title for group in groups] == ["Fashion-MNIST, depth 2, tuned/batched", "Fashion-MNIST, depth 2, sdar, aux 6000"]
    assert [{run.attack.family for run in group.runs} for group in groups] == [{"unsplit"}, {"sdar"}]


def test_defense_groups_at_one_depth_say_what_tells_them_apart(defended):
    stepped = [inversion_run(cell(2, "sdar", 6000, **defense, simulator_steps=1)) for defense in ({}, {"defense": NOPEEK})]
    groups, _ = defense_groups(defended + stepped)
    assert [group.title for group in groups] == ["Fashion-MNIST, depth 2, tuned/batched",
                                                 "Fashion-MNIST, depth 2, sdar, 1 simulator step, aux 6000",
                                                 "Fashion-MNIST, depth 2, sdar, aux 6000"]


def test_the_defense_verdicts_say_against_which_family_each_defense_holds(defended, tmp_path):
    groups, _ = defense_groups(defended)
    assert defense_verdicts(groups) == [
        "**Fashion-MNIST, depth 2.** Gaussian noise 0.5 does not hold against UnSplit or SDAR. "
        "Nopeek 3 holds against UnSplit but not against SDAR."]
    both = [inversion_run(cell(2, defense=NOPEEK, preset="paper"), mse=0.3, ssim=0.05), inversion_run(cell(2, preset="paper"))]
    groups, _ = defense_groups(defended + both)
    assert "Nopeek 3 holds against UnSplit (paper/batched) and UnSplit (tuned/batched) but not against SDAR." \
        in defense_verdicts(groups)[0]
    report = write_report(store_of(tmp_path, defended)).read_text()
    assert "Nopeek 3 holds against UnSplit but not against SDAR." in report.split("## Defenses at the cut")[1]
    assert "| observed sample: MSE / SSIM |" in report  # the SDAR group's table shows what the rule also read
