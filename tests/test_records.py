import json

import pytest

from fake_runs import inversion_run, label_run
from unsplit_tf.records import (
    SCHEMA_VERSION,
    AttackInfo,
    DefenseSetting,
    InversionRun,
    LabelRun,
    RecordError,
    run_from_dict,
)
from unsplit_tf.attacks.inversion import InversionConfig, preset
from unsplit_tf.sweep import Budget, InversionCell, LabelCell


def through_json(run):
    return json.loads(json.dumps(run.to_dict(), allow_nan=False))


@pytest.fixture
def inversion():
    return inversion_run(InversionCell("f_mnist", "tag", 2, DefenseSetting("nopeek", 3.0), budget=Budget(2, 3, 4), targets=3))


@pytest.fixture
def labels():
    return label_run(LabelCell("f_mnist", "tag", defense=DefenseSetting("max_norm_noise"), samples=20))


def test_both_run_records_come_back_equal_through_json(inversion, labels):
    assert InversionRun.from_dict(through_json(inversion)) == inversion
    assert LabelRun.from_dict(through_json(labels)) == labels
    assert run_from_dict(through_json(inversion)) == inversion and run_from_dict(through_json(labels)) == labels
    assert isinstance(run_from_dict(through_json(inversion)).headline.targets.indices, tuple)


def test_arrays_travel_with_the_run_but_not_in_its_json(inversion):
    assert set(inversion.arrays) == {"originals", "reconstructions", "indices"}
    assert "arrays" not in inversion.to_dict()
    assert InversionRun.from_dict(through_json(inversion)).arrays == {}


def test_a_record_of_another_schema_or_kind_is_refused_with_what_it_is(inversion):
    data = through_json(inversion)
    assert data["schema"] == SCHEMA_VERSION and data["kind"] == "inversion"
    with pytest.raises(RecordError, match=f"schema 0; this version reads schema {SCHEMA_VERSION}"):
        run_from_dict({**data, "schema": 0})
    with pytest.raises(RecordError, match="not a labels record"):
        LabelRun.from_dict(data)
    with pytest.raises(RecordError, match="not a run record"):
        run_from_dict({"mse": 0.5})


def test_a_missing_unknown_or_mistyped_key_is_named(inversion):
    data = through_json(inversion)
    del data["victim"]["cut_layer"]
    with pytest.raises(RecordError, match="InversionRun.victim: Victim needs key 'cut_layer'"):
        run_from_dict(data)
    with pytest.raises(RecordError, match=r"unknown keys \['extra'\]"):
        run_from_dict({**through_json(inversion), "extra": 1})
    data = through_json(inversion)
    data["victim"]["depth"] = "two"
    with pytest.raises(RecordError, match="victim.depth: expected int"):
        run_from_dict(data)


def test_the_summary_line_says_whether_the_attack_beat_the_mean_image():
    cell = InversionCell("f_mnist", "tag", 2, targets=3)
    good, bad = inversion_run(cell, mse=0.01), inversion_run(cell, mse=0.2)
    assert good.headline.beats_mean_image and not bad.headline.beats_mean_image
    assert "beats the dataset-mean image (MSE 0.0880" in good.summary()
    assert "does NOT beat the dataset-mean image" in bad.summary()
    assert "stolen clone 60.0% (model 86.0%)" in good.summary()


def test_either_polarity_takes_the_better_of_each_image_and_its_negative(inversion):
    mse, ssim = inversion.headline.either_polarity
    assert mse == pytest.approx(min(inversion.headline.reconstruction.mean_mse, 0.3))
    assert ssim == pytest.approx(max(inversion.headline.reconstruction.mean_ssim, 0.0))


def test_an_attack_config_comes_back_as_its_typed_dataclass():
    config = preset("tuned").replace(main_iters=7, restarts=1, polish_iters=10)
    info = AttackInfo.from_dict(json.loads(json.dumps(AttackInfo.of("unsplit", "tuned", config).to_dict())))
    assert info.config_as(InversionConfig) == config  # the box comes back as a tuple, the mode as a valid literal


def test_how_the_restarts_were_compared_comes_back_through_strict_json():
    import numpy as np

    from unsplit_tf.records import RestartChoice

    choice = RestartChoice.of(np.array([0.01, 0.02, np.inf]), np.array([0.3, 0.5]), 1, 5)
    assert choice.matching_loss == (0.01, 0.02, None)  # the third stopped before its first round: no number to store
    info = AttackInfo.of("unsplit", "stream", preset("stream"), choice)
    assert AttackInfo.from_dict(json.loads(json.dumps(info.to_dict(), allow_nan=False))) == info
    assert AttackInfo.from_dict({"family": "unsplit", "preset": "tuned", "config": {}}).restarts is None  # written before


def test_image_scores_keep_the_affine_aligned_scores_of_an_inverted_picture():
    """A perfect negative scores as no leak on raw SSIM; the record must still show it was recovered."""
    import numpy as np

    from unsplit_tf.records import ImageScores
    from unsplit_tf.scoring import reconstruction_scores

    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    scores = ImageScores.of(reconstruction_scores(x, 1.0 - x))
    assert scores.mean_ssim < 0 and scores.mean_affine_aligned_ssim > 0.99
    assert ImageScores.from_dict(scores.to_dict()) == scores


def test_image_scores_keep_the_shift_that_fits_and_the_summary_names_it():
    import numpy as np

    from unsplit_tf.records import ImageScores
    from unsplit_tf.scoring import reconstruction_scores

    x = np.zeros((2, 16, 16, 1), np.float32)
    x[:, 4:12, 5:10] = 0.8
    scores = ImageScores.of(reconstruction_scores(x, np.roll(x, 2, axis=2)))
    assert scores.shift == (0, -2) and scores.mean_shift_aligned_mse == 0.0 and scores.mean_mse > 0.05
    assert scores.shift_text() == ", shifted by (+0, -2) px: MSE 0.0000, SSIM 1.000"
    assert ImageScores.from_dict(scores.to_dict()) == scores
    in_place = ImageScores.of(reconstruction_scores(x, x))
    assert in_place.shift == (0, 0) and in_place.shift_text() == ""
    assert ImageScores.from_dict({"mse": [0.1], "psnr": [10.0], "ssim": [0.5]}).shift_text() == ""  # written before


def test_a_picture_that_beats_the_mean_image_only_once_aligned_is_said_to_and_the_raw_verdict_stays():
    import dataclasses

    import numpy as np

    from unsplit_tf.records import Baselines, ImageScores
    from unsplit_tf.scoring import baseline_scores, reconstruction_scores

    x = np.zeros((3, 16, 16, 1), np.float32)
    for index in range(3):
        x[index, 3 : 10 + index, 4 : 12 - index] = 0.6 + 0.1 * index
    guesses = {name: ImageScores.of(score) for name, score in baseline_scores(x, mean_image=x.mean(axis=0)).items()}
    baselines = Baselines(guesses["constant_0.5"], guesses["uniform_random"], guesses["dataset_mean"])
    run = inversion_run(InversionCell("f_mnist", "tag", 2, targets=3))

    def scored(pictures, guess=baselines):
        head = dataclasses.replace(run.headline, reconstruction=ImageScores.of(reconstruction_scores(x, pictures)),
                                   baselines=guess)
        return dataclasses.replace(run, evaluations=(head,))

    negative = scored(1.0 - x)  # every garment recovered, as a negative
    assert not negative.headline.beats_mean_image and negative.headline.beats_mean_image_aligned
    assert negative.headline.verdict_text() == "no (yes once aligned)"
    assert "does NOT beat the dataset-mean image (MSE" in negative.summary()
    assert "on raw scores, but beats it once aligned" in negative.summary()
    grey = scored(np.full_like(x, 0.5))  # no information: no alignment makes it a leak
    assert not grey.headline.beats_mean_image_aligned and grey.headline.verdict_text() == "no"
    assert "once aligned" not in grey.summary()
    assert scored(x).headline.verdict_text() == "yes"
    raw_only = Baselines(*(ImageScores(g.mse, g.psnr, g.ssim) for g in (baselines.constant_grey,
                                                                        baselines.uniform_random, baselines.dataset_mean)))
    assert scored(1.0 - x, raw_only).headline.beats_mean_image_aligned is None  # a record without the guess's aligned scores


def test_a_record_written_before_a_field_existed_reads_as_it_ran_not_as_the_default_now():
    from unsplit_tf.attacks.inversion import SDARConfig

    stored = AttackInfo.of("sdar", None, SDARConfig()).config
    older = AttackInfo("sdar", None, {k: v for k, v in stored.items() if k != "simulator_steps"})
    assert SDARConfig().simulator_steps == 3 and older.config_as(SDARConfig).simulator_steps == 1
    assert AttackInfo("sdar", None, stored).config_as(SDARConfig).simulator_steps == 3
