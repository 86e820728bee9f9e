import json

import numpy as np
import pytest

from cbir_tutorial.models.trained import TRAINED_FILE, TrainedExtractor, read_trained
from cbir_tutorial.models.projection_head import ProjectionHead
from cbir_tutorial.training.checkpoint import checkpoint_arrays
from cbir_tutorial.training.model import block_names, freeze_all_but_last_blocks, trainable_model
from cbir_tutorial.training.protocols import category_map_at_k
from cbir_tutorial.training.trainer import CHECKPOINT_FILE, Trainer, TrainingSettings, train, training_split
from tiny_training import tiny

HEAD = {"embedding_hidden/kernel", "embedding_hidden/bias", "embedding/kernel", "embedding/bias"}


def weights_of(folder):
    with np.load(folder / CHECKPOINT_FILE) as state:
        return {k: state[k] for k in state.files if k != "meta"}


def test_only_the_last_blocks_and_the_head_train_and_batchnorm_is_frozen():
    net = trainable_model("efficientnet_lite0", 8, 2, input_size=32)
    assert block_names(net.model)[-2:] == ["block14", "block15"]
    assert set(net.trainable_layers) == {"block14_expand_conv", "block14_dwconv", "block14_project_conv",
                                         "block15_expand_conv", "block15_dwconv", "block15_project_conv", "top_conv"}
    assert not any(layer.trainable for layer in net.model.layers if type(layer).__name__ == "BatchNormalization")
    assert len(net.head) == 2 and len(net.backbone) == 7
    assert freeze_all_but_last_blocks(net.model, 0) == []
    assert {v.path for v in net.model.trainable_variables} == {v.path for v in net.head}
    mlp = trainable_model("efficientnet_lite0", 8, 2, hidden_dim=16, input_size=32)  # the projection head's MLP
    assert {v.path for v in mlp.head} == HEAD and len(mlp.backbone) == 7


def test_a_run_saves_a_model_that_embeds(trained_run, tiny_catalogue):
    out, result = trained_run
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert [h["phase"] for h in result.history] == ["warm-up", "fine-tune"]
    assert all(np.isfinite(h["loss"]) and 0 <= h["val_map"] <= 1 for h in result.history)
    info = read_trained(out)
    assert info["loss"] == "multi-similarity" and info["input_size"] == 32 and len(info["history"]) == 2
    assert info["best_epoch"] == result.best_epoch and info["n_validation"] > 0
    assert 0 < result.frozen_val_map <= 1 and info["frozen_val_map_at_k"] == result.frozen_val_map
    extractor = TrainedExtractor(out)
    features = extractor.extract(tiny_catalogue.paths[:4], cache=False, progress=False).features
    assert features.shape == (4, 16)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)


def changed_weights(before, model):
    return {w.path for w in model.weights if not np.array_equal(before[w.path], np.asarray(w))}


def last_epoch(trainer, folder):
    """The trainer's embedding model as its last epoch left it (its checkpoint's): after ``fit``, early stopping
    has restored the best epoch's weights."""
    trainer.model.set_weights(checkpoint_arrays(folder / CHECKPOINT_FILE, "model"))
    return trainer.net.model


@pytest.mark.parametrize("loss", ["proxy-anchor", "multi-similarity"])
def test_the_probe_is_the_projection_head_fitted_alone_on_frozen_features(tiny_catalogue, tmp_path, loss):
    trainer = Trainer(tiny_catalogue, tiny(loss=loss, probe_steps=60), tmp_path, progress=False)
    before = {w.path: np.asarray(w).copy() for w in trainer.net.model.weights}
    features = trainer.pooled_features(trainer.photos.train_rows)
    assert features.shape == (len(trainer.photos.train_rows), 1280) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)  # what FeatureExtractor gives
    losses = trainer.probe()
    assert len(losses) == 60 and np.mean(losses[-10:]) < np.mean(losses[:10])
    assert changed_weights(before, trainer.net.model) == HEAD
    # the backbone did not move
    np.testing.assert_array_equal(trainer.pooled_features(trainer.photos.train_rows), features)
    s = trainer.settings
    head = ProjectionHead(1280, s.embedding_dim, s.hidden_dim, seed=s.seed).fit(
        features, trainer.photos.train_codes, steps=60, learning_rate=s.learning_rate)
    photos = trainer.photos.pixels[trainer.photos.validation_rows]
    np.testing.assert_allclose(trainer._embed(photos),
                               head.transform(trainer.pooled_features(trainer.photos.validation_rows)),
                               atol=1e-5)  # the model's head is the projection head
    if loss == "proxy-anchor":  # the proxies start at the head's class means
        embedded = head.transform(features)
        proxies = np.asarray(trainer.model.proxies)
        for code in range(len(trainer.photos.classes)):
            mean = embedded[trainer.photos.train_codes == code].mean(axis=0)
            np.testing.assert_allclose(proxies[code], mean / np.linalg.norm(mean), atol=1e-5)


@pytest.mark.slow
def test_resume_continues_as_an_uninterrupted_run(trained_run, tiny_catalogue, tmp_path):
    straight, result = trained_run
    first = Trainer(tiny_catalogue, tiny(loss="multi-similarity", epochs=1), tmp_path, progress=False)
    before = {w.path: np.asarray(w).copy() for w in first.net.model.weights}
    assert len(first.run().history) == 1
    warmed_up = changed_weights(before, last_epoch(first, tmp_path))  # the warm-up epoch trains the head only
    assert warmed_up and all(p.split("/")[0] in ("embedding", "embedding_hidden") for p in warmed_up)
    with pytest.raises(ValueError, match="resume"):
        train(tiny_catalogue, tmp_path, tiny(loss="multi-similarity"), progress=False)
    with pytest.raises(ValueError, match="embedding_dim"):
        train(tiny_catalogue, tmp_path, tiny(loss="multi-similarity", embedding_dim=8), resume=True, progress=False)

    second = Trainer(tiny_catalogue, tiny(loss="multi-similarity"), tmp_path, progress=False)
    resumed = second.run(resume=True)
    changed = changed_weights(before, last_epoch(second, tmp_path))  # then the last blocks, never BatchNorm or
    # early blocks
    assert any(p.startswith("block15_") for p in changed) and any(p.startswith("top_conv") for p in changed)
    assert not any("_bn/" in p or p.startswith("block0_") for p in changed)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for a, b in zip(resumed.history, result.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4) and a["val_map"] == pytest.approx(b["val_map"], abs=1e-6)
    got, expected = weights_of(tmp_path), weights_of(straight)
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert json.loads((tmp_path / TRAINED_FILE).read_text())["history"] == resumed.history


@pytest.mark.slow
def test_early_stopping_and_bad_settings(tiny_catalogue, tmp_path):
    result = train(tiny_catalogue, tmp_path, tiny(loss="ms", epochs=6, patience=1, trainable_blocks=0,
                                                 learning_rate=0.0), progress=False)
    # nothing moves: the probe (epoch 0) stays best; Keras's EarlyStopping never stops after the first epoch of
    # a fit, so the second epoch without gain ends the run
    assert result.stopped_early and len(result.history) == 2 and result.best_epoch == 0
    assert result.best_val_map == result.probe_val_map == result.history[0]["val_map"] == result.history[1]["val_map"]
    with pytest.raises(ValueError, match="epochs"):
        TrainingSettings(epochs=0).checked()
    with pytest.raises(ValueError, match="loss"):
        TrainingSettings(loss="contrastive").checked()


@pytest.mark.slow
def test_float16_training_scales_the_loss_and_stays_finite(tiny_catalogue, tmp_path):
    trainer = Trainer(tiny_catalogue, tiny(mixed_precision="float16", epochs=1), tmp_path, progress=False)
    assert trainer.precision == "mixed_float16"
    assert trainer.net.model.get_layer("top_conv").compute_dtype == "float16"
    assert trainer.net.model.get_layer("embedding").compute_dtype == "float32"
    result = trainer.run()
    scale = float(trainer.model.optimizer.dynamic_scale.numpy())  # Keras's LossScaleOptimizer
    assert np.log2(scale) == int(np.log2(scale)) and 1 <= scale <= 2 ** 15
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert all(np.isfinite(np.asarray(v)).all() for v in trainer.net.head + trainer.net.backbone)


def test_presets_follow_the_machine(monkeypatch):
    from cbir_tutorial.training import settings as trainer

    gpu, cpu = TrainingSettings(), TrainingSettings.cpu()
    assert gpu.classes_per_batch * gpu.images_per_class == 64 and cpu.classes_per_batch * cpu.images_per_class == 32
    assert gpu.mixed_precision == "auto" and cpu.epochs < gpu.epochs
    monkeypatch.setattr(trainer, "gpus", lambda: [])
    assert TrainingSettings.for_this_machine(seed=3) == TrainingSettings.cpu(seed=3)
    monkeypatch.setattr(trainer, "gpus", lambda: ["GPU:0"])
    assert TrainingSettings.for_this_machine(seed=3) == TrainingSettings(seed=3)


@pytest.mark.slow
def test_the_model_returned_is_never_below_the_probe_on_validation(tiny_catalogue, tmp_path):
    settings = tiny(loss="proxy-anchor", epochs=3, patience=3, beat_probe_level=0, refit_probe=False)  # any gain
    result = train(tiny_catalogue, tmp_path, settings, progress=False)
    scores = [result.probe_val_map] + [h["val_map"] for h in result.history]
    assert result.best_val_map == max(scores) >= result.probe_val_map and scores[result.best_epoch] == max(scores)
    # the folder's model, reading the validation photos from their files, scores what the run measured
    _, validation, held_out = training_split(tiny_catalogue.labels, settings.checked())
    assert not held_out.any()  # 3 categories: none can be held out
    paths = [tiny_catalogue.paths[i] for i in np.flatnonzero(validation)]
    features = TrainedExtractor(tmp_path, mixed_precision="off").extract(paths, cache=False, progress=False).features
    found = category_map_at_k(features, tiny_catalogue.labels.astype(str)[validation], settings.k)
    assert found == pytest.approx(result.best_val_map, abs=1e-6) and found >= result.probe_val_map


def test_an_epoch_replaces_the_probe_only_when_its_gain_is_clear(tiny_catalogue, tmp_path):
    trainer = Trainer(tiny_catalogue, tiny(loss="multi-similarity"), tmp_path, progress=False)
    assert trainer.gain_over_probe(np.ones(4)) is None  # no probe yet
    trainer.probe()
    trainer.probe_scores = probe = trainer.validation_scores()
    assert probe.shape == (len(trainer.photos.validation_rows),)
    assert probe.mean() == pytest.approx(trainer.validation_map())
    assert trainer.gain_over_probe(probe)["beats"] is False  # the probe against itself
    noisy = probe.copy()
    worst = np.argmin(noisy)
    noisy[worst] = min(noisy[worst] + 0.5, 1.0)  # one query better: a gain, but not a clear one
    gain = trainer.gain_over_probe(noisy)
    assert gain["difference"] > 0 and gain["low"] <= 0 < gain["high"] and not gain["beats"]
    assert gain["level"] == 0.95
    clear = trainer.gain_over_probe(probe + 0.2)  # every query better
    assert clear["low"] > 0 and clear["beats"]
    trainer.settings = tiny(loss="multi-similarity", beat_probe_level=0).checked()
    assert trainer.gain_over_probe(noisy)["beats"]  # level 0: any gain


def test_a_kept_probe_is_fitted_again_on_every_photo_of_the_training_side(tiny_catalogue, tmp_path):
    trainer = Trainer(tiny_catalogue, tiny(loss="proxy-anchor", probe_steps=40), tmp_path, progress=False)
    trainer.probe()
    n = trainer.refit_probe()
    p = trainer.photos
    assert n == len(p.pixels) == len(p.train_rows) + len(p.validation_rows) > len(p.train_rows)
    s = trainer.settings
    features = trainer.pooled_features(np.arange(n))
    head = ProjectionHead(1280, s.embedding_dim, s.hidden_dim, seed=s.seed).fit(
        features, tiny_catalogue.labels.astype(str), steps=40, learning_rate=s.learning_rate)
    np.testing.assert_allclose(trainer._embed(trainer.photos.pixels), head.transform(features), atol=1e-5)


@pytest.mark.slow
def test_a_run_keeps_the_probe_unless_an_epoch_beats_it_clearly(tiny_catalogue, tmp_path):
    result = train(tiny_catalogue, tmp_path, tiny(loss="proxy-anchor", epochs=3, patience=3), progress=False)
    assert all({"gain", "gain_low", "gain_high", "beats_probe"} <= set(h) for h in result.history)
    assert all(h["beats_probe"] == (h["gain_low"] > 0) for h in result.history)
    clear = [h["epoch"] for h in result.history if h["beats_probe"]]
    if clear:  # the best epoch is the best of those that beat the probe clearly
        assert result.best_epoch in clear and result.refit == 0
        assert result.best_val_map == max(result.history[e - 1]["val_map"] for e in clear)
    else:  # the probe, fitted again on every photo of the training side
        assert result.best_epoch == 0 and result.best_val_map == result.probe_val_map
        assert result.refit == len(tiny_catalogue.paths) == read_trained(tmp_path)["refit_on"]


def test_a_run_name_follows_the_settings_and_the_package_version(monkeypatch):
    """Notebook 10 caches its trained model under this name: other settings, or a newer trainer, train again."""
    settings = TrainingSettings.cpu()
    name = settings.run_name("shop", 100)
    assert name.startswith(f"shop-100-{settings.loss}-") and name == TrainingSettings.cpu().run_name("shop", 100)
    assert TrainingSettings.cpu(seed=1).run_name("shop", 100) != name != settings.run_name("shop", 99)
    monkeypatch.setattr("cbir_tutorial._version.__version__", "99.0")
    assert settings.run_name("shop", 100) != name
