import json

import numpy as np
import pytest

from cbir_tutorial.models.trained import TRAINED_FILE, TrainedExtractor, read_trained
from cbir_tutorial.training.model import block_names, freeze_all_but_last_blocks, trainable_model
from cbir_tutorial.training.trainer import CHECKPOINT_FILE, Trainer, TrainingSettings, decoded_images, train
from tiny_training import tiny


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


@pytest.mark.parametrize("loss", ["proxy-anchor", "multi-similarity"])
def test_the_linear_probe_fits_the_embedding_layer_alone_on_frozen_features(tiny_catalogue, tmp_path, loss):
    trainer = Trainer(tiny_catalogue, tiny(loss=loss, probe_steps=60), tmp_path, progress=False)
    before = {w.path: np.asarray(w).copy() for w in trainer.net.model.weights}
    features = trainer.pooled_features(trainer.train_rows)
    assert features.shape == (len(trainer.train_rows), 1280) and features.dtype == np.float32
    losses = trainer.probe()
    assert len(losses) == 60 and np.mean(losses[-10:]) < np.mean(losses[:10])
    assert changed_weights(before, trainer.net.model) == {"embedding/kernel", "embedding/bias"}
    np.testing.assert_array_equal(trainer.pooled_features(trainer.train_rows), features)  # the backbone did not move


@pytest.mark.slow
def test_resume_continues_as_an_uninterrupted_run(trained_run, tiny_catalogue, tmp_path):
    straight, result = trained_run
    first = Trainer(tiny_catalogue, tiny(loss="multi-similarity", epochs=1), tmp_path, progress=False)
    before = {w.path: np.asarray(w).copy() for w in first.net.model.weights}
    assert len(first.run().history) == 1
    warmed_up = changed_weights(before, first.net.model)  # the warm-up epoch trains the new layer only
    assert warmed_up and all(p.startswith("embedding/") for p in warmed_up)
    with pytest.raises(ValueError, match="resume"):
        train(tiny_catalogue, tmp_path, tiny(loss="multi-similarity"), progress=False)
    with pytest.raises(ValueError, match="embedding_dim"):
        train(tiny_catalogue, tmp_path, tiny(loss="multi-similarity", embedding_dim=8), resume=True, progress=False)

    second = Trainer(tiny_catalogue, tiny(loss="multi-similarity"), tmp_path, progress=False)
    resumed = second.run(resume=True)
    changed = changed_weights(before, second.net.model)  # then the last blocks, never BatchNorm or early blocks
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
    # nothing moves: the linear probe (epoch 0) stays best and one epoch without gain is the patience
    assert result.stopped_early and len(result.history) == 1 and result.best_epoch == 0
    assert result.best_val_map == result.probe_val_map == result.history[0]["val_map"]
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
    scale = float(trainer.loss_scale.scale.numpy())
    assert np.log2(scale) == int(np.log2(scale)) and 1 <= scale <= 2 ** 15
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert all(np.isfinite(np.asarray(v)).all() for v in trainer.net.head + trainer.net.backbone)


def test_unreadable_photos_are_left_out_with_their_reason(sample_catalogue, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    pixels, kept, reasons = decoded_images([sample_catalogue.paths[0], str(broken), sample_catalogue.paths[1]], 24,
                                           "squash")
    assert pixels.shape == (2, 24, 24, 3) and pixels.dtype == np.uint8
    assert kept.tolist() == [True, False, True] and len(reasons) == 1 and "broken.jpg" in reasons[0]


def test_presets_follow_the_machine(monkeypatch):
    from cbir_tutorial.training import trainer

    gpu, cpu = TrainingSettings(), TrainingSettings.cpu()
    assert gpu.classes_per_batch * gpu.images_per_class == 64 and cpu.classes_per_batch * cpu.images_per_class == 32
    assert gpu.mixed_precision == "auto" and cpu.epochs < gpu.epochs
    monkeypatch.setattr(trainer, "gpus", lambda: [])
    assert TrainingSettings.for_this_machine(seed=3) == TrainingSettings.cpu(seed=3)
    monkeypatch.setattr(trainer, "gpus", lambda: ["GPU:0"])
    assert TrainingSettings.for_this_machine(seed=3) == TrainingSettings(seed=3)
