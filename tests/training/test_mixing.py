"""The fusion with the frozen features: its weight is the validation argmax of the rule, chosen on categories held
out of training (never the test side), and the saved folder embeds with it."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cbir_tutorial.models.trained import TRAINED_FILE, TrainedExtractor, TrainedModelError, read_trained
from cbir_tutorial.search.recipes import trained_recipe
from cbir_tutorial.search.whitening import fuse
from cbir_tutorial.training.mixing import (MIXING_RULE, MIXING_WEIGHTS, chosen_weight, fused, fusion_choice,
                                           fusion_summary, mixing_curve, no_fusion, tradeoff_figure)
from cbir_tutorial.training.protocols import (category_halves, held_out_categories, new_types_split,
                                              training_split)
from cbir_tutorial.training.trainer import train
from run_folders import made_once
from tiny_training import mixing_catalogue_of, tiny


def test_fused_is_the_recipes_fuse_with_weights_one_minus_w_and_w():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 3))
    for w in (0.0, 0.3, 1.0):
        np.testing.assert_allclose(fused(a, b, w), fuse([a, b], [1 - w, w]), atol=1e-6)


def curve_of(rows):
    return pd.DataFrame(rows, columns=["weight", "map_seen", "map_unseen"]).assign(map_all=0.0)


def test_the_chosen_weight_is_the_best_seen_map_that_does_not_forget():
    curve = curve_of([(0.0, 0.50, 0.60), (0.5, 0.70, 0.61), (0.8, 0.80, 0.60), (1.0, 0.90, 0.40)])
    assert chosen_weight(curve) == 0.8  # 1.0 sees best but forgets; 0.8 ties the frozen unseen MAP
    assert chosen_weight(curve_of([(0.0, 0.5, 0.6), (0.5, 0.7, 0.6), (1.0, 0.7, 0.6)])) == 1.0  # ties: larger
    assert chosen_weight(curve_of([(0.0, 0.5, 0.6), (1.0, 0.9, 0.5)])) == 0.0  # all forget: the frozen features
    with pytest.raises(ValueError, match="weight 0"):
        chosen_weight(curve_of([(0.5, 0.5, 0.6)]))
    figure = tradeoff_figure(curve, k=10)
    ax = figure.axes[0]
    assert "chosen (w = 0.8)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_xlabel().startswith("MAP@10, unseen types")


def test_weights_that_land_on_one_point_share_one_label():
    curve = curve_of([(0.0, 0.50, 0.60), (0.3, 0.70, 0.62), (0.4, 0.70, 0.62), (0.5, 0.701, 0.621),
                      (0.6, 0.75, 0.58), (1.0, 0.75, 0.58)])
    ax = tradeoff_figure(curve, 0.5, k=10).axes[0]
    assert [t.get_text() for t in ax.texts] == ["0", "0.3–0.5", "0.6–1"]


def test_the_choice_is_recorded_with_its_curve_and_said_in_one_line():
    rng = np.random.default_rng(1)
    labels = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 3 + ["d"] * 3)  # validation a, b; held out c, d
    frozen, trained = rng.normal(size=(14, 6)), rng.normal(size=(14, 4))
    choice = fusion_choice(frozen, trained, labels, ["a", "b"], 3, n_validation=8)
    curve = mixing_curve(frozen, trained, labels, ["a", "b"], 3)
    assert choice["weight"] == chosen_weight(curve) and choice["curve"] == curve.to_dict(orient="records")
    assert choice["held_out_categories"] == ["c", "d"] and (choice["n_held_out"], choice["n_validation"]) == (6, 8)
    assert choice["rule"] == MIXING_RULE
    line = fusion_summary(choice, 3)
    at = {round(r["weight"], 2): r for r in choice["curve"]}
    chosen = at[round(choice["weight"], 2)]
    assert line.startswith(f"fusion with the frozen features, weight {choice['weight']:g} (chosen on 2 categories")
    assert f"unseen types {chosen['map_unseen']:.4f} (frozen {at[0.0]['map_unseen']:.4f}" in line
    assert no_fusion(0.0) == {"weight": 1.0, "reason": "no categories held out (mixing_fraction=0)"}
    assert "mixing_fraction=0.15" in no_fusion(0.15)["reason"] and fusion_summary(no_fusion(0.15), 3) is None


def test_held_out_categories_stay_within_their_share_and_leave_two_to_train(sample_catalogue):
    labels = sample_catalogue.labels.astype(str)
    everything = np.ones(len(labels), bool)
    held = held_out_categories(labels, everything, fraction=0.15, seed=0)
    names = set(labels[held])
    assert len(names) >= 2 and held.sum() <= 0.15 * len(labels)
    assert held.tolist() == np.isin(labels, list(names)).tolist()  # whole categories
    assert (held_out_categories(labels, everything, fraction=0.15, seed=0) == held).all()  # labels and seed only
    assert not held_out_categories(labels, everything, fraction=0.0).any()
    three = np.array(["A"] * 5 + ["B"] * 5 + ["C"] * 5)
    assert not held_out_categories(three, np.ones(15, bool), fraction=0.9).any()  # 1 would be left to train


def test_trained_on_a_searched_on_b(sample_catalogue):
    labels = sample_catalogue.labels.astype(str)
    a, b = category_halves(labels)
    assert "Tshirts" in a and "Watches" in b and not set(a) & set(b) and len(a) + len(b) == 30
    split = new_types_split(labels)
    assert set(split.train_categories) <= set(a) and not (split.train & split.test).any()
    assert np.isin(labels, b).sum() == (split.test & np.isin(labels, b)).sum()  # every product of B is searched
    assert set(b) <= set(split.test_categories) and set(split.test_categories) & set(a)


@pytest.fixture(scope="module")
def mixed_run(sample_catalogue, tmp_path_factory):
    catalogue = mixing_catalogue_of(sample_catalogue)
    settings = tiny(loss="proxy-anchor", epochs=1, mixing_fraction=0.4, validation_fraction=0.34,
                    classes_per_batch=4, images_per_class=2)
    out, result = made_once(tmp_path_factory, "mixed-run",  # trained once per run, whichever worker asks first
                            lambda folder: (folder / "run", train(catalogue, folder / "run", settings, progress=False)))
    return catalogue, settings, out, result


@pytest.mark.slow
def test_the_weight_is_the_validation_argmax_and_the_folder_embeds_with_it(mixed_run):
    catalogue, settings, out, result = mixed_run
    labels = catalogue.labels.astype(str)
    train_side, validation, held_out = training_split(labels, settings.checked())
    mixing = result.mixing
    assert mixing["held_out_categories"] == sorted(set(labels[held_out])) and len(mixing["held_out_categories"]) == 2
    assert not (held_out & (train_side | validation)).any()
    assert read_trained(out)["classes"] == sorted(set(labels[train_side]))  # never trained on the held-out ones
    curve = pd.DataFrame(mixing["curve"])
    assert curve["weight"].tolist() == list(MIXING_WEIGHTS)
    assert mixing["weight"] == chosen_weight(curve)  # the argmax of the rule on validation
    info = read_trained(out)
    assert info["fusion_weight"] == mixing["weight"] and info["mixing"]["curve"] == mixing["curve"]

    rows = np.concatenate([np.flatnonzero(validation), np.flatnonzero(held_out)])  # the curve's gallery, in order
    paths = [catalogue.paths[i] for i in rows]
    folder = TrainedExtractor(out, mixed_precision="off")
    assert folder.fused == (mixing["weight"] < 1)
    embedded = folder.extract(paths, cache=False, progress=False).features
    alone = TrainedExtractor(out, fusion=False, mixed_precision="off").extract(paths, cache=False,
                                                                              progress=False).features
    assert alone.shape[1] == settings.embedding_dim
    remeasured = mixing_curve(embedded[:, :1280] if folder.fused else embedded, alone, labels[rows],
                              info["classes"], settings.k, weights=[mixing["weight"]]) if folder.fused else None
    chosen = curve[curve["weight"] == mixing["weight"]].iloc[0]
    if folder.fused:  # the folder's embedding, read from the files, scores what the run chose on
        assert embedded.shape[1] == 1280 + settings.embedding_dim
        np.testing.assert_allclose(embedded, fused(embedded[:, :1280], alone, mixing["weight"]), atol=1e-5)
        assert remeasured.iloc[0]["map_seen"] == pytest.approx(chosen["map_seen"], abs=1e-6)
        assert remeasured.iloc[0]["map_unseen"] == pytest.approx(chosen["map_unseen"], abs=1e-6)
    recipe = trained_recipe(out)  # a recipe built from the folder embeds with the chosen weight
    assert recipe.embedding.trained_hash == info["weights_hash"]


@pytest.mark.slow
def test_a_finished_run_resumed_keeps_the_weight_chosen_before_its_refit(mixed_run, tmp_path):
    """The refit sees the held-out categories: a curve measured again after it would choose on seen data."""
    catalogue, settings, out, result = mixed_run
    assert result.best_epoch == 0 and result.refit > 0  # the probe was kept and fitted again on every photo
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    again = train(catalogue, copy, settings, resume=True, progress=False)
    assert again.mixing == result.mixing and again.refit == result.refit
    assert read_trained(copy)["weights_hash"] == read_trained(out)["weights_hash"]  # not refitted a second time


@pytest.mark.slow
def test_a_hand_edited_fusion_weight_is_refused(mixed_run, tmp_path):
    _, _, out, result = mixed_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    info = json.loads((copy / TRAINED_FILE).read_text())
    info["fusion_weight"] = 0.5 if info["fusion_weight"] != 0.5 else 0.6
    (copy / TRAINED_FILE).write_text(json.dumps(info))
    with pytest.raises(TrainedModelError, match="weights_hash"):
        TrainedExtractor(copy)


@pytest.mark.slow
def test_an_engine_built_from_the_folder_searches_with_the_chosen_embedding(mixed_run, capsys):
    """Notebook 10's section 9: the folder is a recipe; the engine embeds with the chosen fusion."""
    from cbir_tutorial.search.engine import SearchEngine

    catalogue, _, out, result = mixed_run
    engine = SearchEngine.build(catalogue, recipe=str(out), cache=False, progress=False)
    expected = TrainedExtractor(out).extract(catalogue.paths, cache=False, progress=False).features
    np.testing.assert_allclose(engine.features, expected, atol=1e-5)
    assert engine.features.shape[1] == (1280 if result.mixing["weight"] < 1 else 0) + 16


def test_a_curve_without_seen_type_queries_chooses_the_best_unseen_map():
    """validation_by="categories": every validation category is unseen, so map_seen is NaN at every weight."""
    nan = float("nan")
    curve = curve_of([(0.0, nan, 0.60), (0.5, nan, 0.66), (0.8, nan, 0.66), (1.0, nan, 0.55)])
    assert chosen_weight(curve) == 0.8  # the best unseen-type MAP, ties to the larger weight
    assert chosen_weight(curve_of([(0.0, nan, 0.6), (1.0, nan, 0.5)])) == 0.0  # never below the frozen features
    with pytest.raises(ValueError, match="weight 0"):
        chosen_weight(curve_of([(0.0, nan, nan), (1.0, nan, nan)]))


@pytest.mark.slow
def test_a_run_validated_on_categories_completes_with_a_real_weight(sample_catalogue, tmp_path):
    settings = tiny(epochs=1, probe_steps=5, validation_by="categories", mixing_fraction=0.4,
                    validation_fraction=0.5, classes_per_batch=2, images_per_class=2)
    result = train(mixing_catalogue_of(sample_catalogue), tmp_path / "run", settings, progress=False)
    curve = pd.DataFrame(result.mixing["curve"])
    assert curve["map_seen"].isna().all() and np.isfinite(result.mixing["weight"])
    assert result.mixing["weight"] == chosen_weight(curve)
    assert read_trained(tmp_path / "run")["fusion_weight"] == result.mixing["weight"]
