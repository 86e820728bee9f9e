"""EfficientNet-Lite2 through the same torch-free reader as Lite0: every tensor mapped, a real photo recognised."""

from __future__ import annotations

import numpy as np
import pytest

from cbir_tutorial.models import efficientnet_lite as lite
from cbir_tutorial.models import torch_pickle
from cbir_tutorial.models.backbones import backbone_spec

LITE2 = "efficientnet_lite2"
MILITARY_UNIFORM = 652


def grace_hopper(size: int) -> np.ndarray:
    """matplotlib's sample photo of Grace Hopper in uniform, squashed to ``(size, size, 3)`` float32 0..255."""
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32)


def test_lite2_is_a_registered_260_px_backbone():
    spec = backbone_spec("EfficientNet-Lite2")
    assert (spec.name, spec.input_size, spec.feature_dim) == (LITE2, 260, 1280)


def test_every_lite2_tensor_maps_to_one_keras_weight():
    state = torch_pickle.read_torch_state_dict(lite.torch_weights_path(LITE2))
    weights = lite.keras_weights_from_state_dict(state, LITE2)  # raises on any unused or missing tensor
    blocks = {name.split("_")[0] for name in weights if name.startswith("block")}
    assert blocks == {f"block{i}" for i in range(21)}  # Lite2's 21 blocks (Lite0: 16), each mapped
    assert {key.split(".")[1] for key in state if key.startswith("_blocks.")} == {str(i) for i in range(21)}
    assert weights["block20_project_conv"][0].shape == (1, 1, 1248, 352)
    with pytest.raises(ValueError, match="never used"):
        lite.keras_weights_from_state_dict(state)  # Lite0's layout leaves Lite2's extra blocks unused


def test_lite2_recognises_a_military_uniform():
    model = lite.efficientnet_lite2()
    probabilities = model.predict(lite.preprocess_input(grace_hopper(260)[None]), verbose=0)[0]
    assert model.name == LITE2 and model.count_params() == 6_150_168
    assert int(np.argmax(probabilities)) == MILITARY_UNIFORM
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)
