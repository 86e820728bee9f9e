import numpy as np
import pytest
from matplotlib.figure import Figure

from cbir_tutorial import load_rgb
from cbir_tutorial.lessons.architectures import small_cnn
from cbir_tutorial.lessons.convolution import (KERNELS, convolve, feature_maps, feature_maps_figure, filtered_figure, grey,
                                       output_size, output_size_table, pool, same_padding)


@pytest.fixture(scope="module")
def photo(sample_dir):
    """A real 60x80 product photo, as (80, 60, 3) uint8."""
    return load_rgb(sorted((sample_dir / "images").glob("*.jpg"))[0])


@pytest.mark.parametrize("n, kernel, stride, padding, expected", [
    (224, 3, 1, "valid", 222), (224, 3, 1, "same", 224), (224, 3, 2, "same", 112), (224, 3, 2, "valid", 111),
    (224, 7, 2, 3, 112),  # ResNet50's first convolution
    (299, 3, 2, "valid", 149),  # Xception's first convolution
    (5, 5, 1, "valid", 1), (5, 2, 2, "valid", 2), (5, 2, 2, "same", 3), (7, 3, 3, 1, 3),
])
def test_output_size(n, kernel, stride, padding, expected):
    assert output_size(n, kernel, stride, padding) == expected


def test_output_size_refuses_impossible_settings():
    with pytest.raises(ValueError, match="does not fit"):
        output_size(2, 3)
    with pytest.raises(ValueError, match="padding='full'"):
        output_size(8, 3, 1, "full")
    with pytest.raises(ValueError, match="at least 1"):
        output_size(8, 3, 0)


def test_the_padding_word_is_read_in_any_case_as_keras_reads_it():
    image = np.arange(42, dtype=np.float32).reshape(6, 7)
    assert output_size(224, 3, 2, "SAME") == output_size(224, 3, 2, "same") == 112
    assert output_size(224, 3, 2, " Valid") == 111
    np.testing.assert_array_equal(convolve(image, KERNELS["outline"], 2, "SAME"), convolve(image, KERNELS["outline"], 2, "same"))


def test_same_padding_puts_the_odd_pixel_after():
    assert same_padding(224, 3, 1) == (1, 1)
    assert same_padding(224, 3, 2) == (0, 1)
    assert same_padding(225, 3, 2) == (1, 1)
    assert same_padding(8, 1, 2) == (0, 0)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", ["valid", "same", 2])
def test_convolve_equals_keras_conv2d_on_a_photo(photo, stride, padding):
    import keras

    rng = np.random.default_rng(stride)
    kernel = rng.normal(size=(3, 3, 3)).astype(np.float32)
    x = photo.astype(np.float32) / 255.0
    ours = convolve(x, kernel, stride, padding)
    keras_padding = padding
    if isinstance(padding, int):
        x = np.pad(x, ((padding, padding), (padding, padding), (0, 0)))
        keras_padding = "valid"
    layer = keras.layers.Conv2D(1, 3, strides=stride, padding=keras_padding, use_bias=False)
    layer.build((None, *x.shape))
    layer.set_weights([kernel[..., None]])
    theirs = np.asarray(layer(x[None]))[0, :, :, 0]
    assert ours.shape == theirs.shape == (output_size(80, 3, stride, padding), output_size(60, 3, stride, padding))
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_per_channel_kernel_and_identity(photo):
    x = photo.astype(np.float32)
    np.testing.assert_array_equal(convolve(x, KERNELS["identity"], padding="same"), x)
    blurred = convolve(x, KERNELS["blur"])
    assert blurred.shape == (78, 58, 3)
    np.testing.assert_allclose(blurred[10, 20], x[10:13, 20:23].mean(axis=(0, 1)), rtol=1e-5)


def test_edge_filters_find_the_edge_of_a_step():
    step = np.zeros((6, 8), dtype=np.float32)
    step[:, 4:] = 1.0  # dark left half, bright right half: one vertical edge
    vertical = convolve(step, KERNELS["vertical edges"])
    assert vertical.shape == (4, 6)
    np.testing.assert_array_equal(vertical, np.tile([0, 0, 4, 4, 0, 0], (4, 1)))
    np.testing.assert_array_equal(convolve(step, KERNELS["horizontal edges"]), np.zeros((4, 6)))


def test_convolve_checks_shapes():
    with pytest.raises(ValueError, match="needs an image with 3 channels"):
        convolve(np.zeros((5, 5)), np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="does not fit"):
        convolve(np.zeros((2, 2)), np.zeros((3, 3)))


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("size, stride", [(2, None), (3, 2)])
def test_pool_equals_keras(photo, mode, padding, size, stride):
    import keras

    x = photo.astype(np.float32)
    layer = (keras.layers.MaxPooling2D if mode == "max" else keras.layers.AveragePooling2D)(
        size, strides=stride, padding=padding)
    theirs = np.asarray(layer(x[None]))[0]
    ours = pool(x, size, stride, mode, padding)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_pool_by_hand():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(pool(x), [[5, 7], [13, 15]])
    np.testing.assert_array_equal(pool(x, mode="average"), [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(ValueError, match="mode='min'"):
        pool(x, mode="min")


def test_grey(photo):
    g = grey(photo)
    assert g.shape == photo.shape[:2] and g.dtype == np.float32
    assert 0.0 <= g.min() and g.max() <= 1.0
    np.testing.assert_allclose(grey(np.full((2, 2, 3), 255, np.uint8)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(grey(np.array([[[255, 0, 0]]], np.uint8)), 0.299, rtol=1e-6)


def test_output_size_table_matches_convolve():
    table = output_size_table(9, kernels=(3, 5), strides=(1, 2), paddings=("valid", "same"))
    assert len(table) == 8 and list(table.columns) == ["input", "kernel", "stride", "padding", "output"]
    for row in table.itertuples():
        out = convolve(np.zeros((9, 9)), np.zeros((row.kernel, row.kernel)), row.stride, row.padding)
        assert out.shape == (row.output, row.output)


def test_feature_maps_are_relu_of_conv_plus_bias(photo):
    model = small_cnn((80, 60, 3), filters=(4,), n_classes=3)
    x = photo.astype(np.float32)[None] / 255.0
    maps = feature_maps(model, "conv1", x)
    assert maps.shape == (1, 78, 58, 4)
    kernel, bias = model.get_layer("conv1").get_weights()
    for c in range(4):
        by_hand = np.maximum(convolve(x[0], kernel[..., c]) + bias[c], 0)
        np.testing.assert_allclose(maps[0, :, :, c], by_hand, atol=1e-4)


def test_figures(photo):
    fig = filtered_figure(photo)
    assert isinstance(fig, Figure)
    assert sum(bool(ax.images) for ax in fig.axes) == len(KERNELS) + 2
    fig = feature_maps_figure(np.random.default_rng(0).random((1, 10, 12, 20)), n=16, columns=8)
    assert sum(bool(ax.images) for ax in fig.axes) == 16
    assert fig.axes[0].images[0].get_array().shape == (10, 12)
    with pytest.raises(ValueError, match=r"expected \(H, W, C\)"):
        feature_maps_figure(np.zeros((3, 3)))


def test_stride_padding_figure_draws_the_padding_the_windows_and_the_output():
    from cbir_tutorial.lessons.convolution import output_size, stride_padding_figure

    fig = stride_padding_figure(7, 3, 2, 1, windows=3)
    left, right = fig.axes
    labels = [patch.get_label() for patch in left.patches]
    assert labels.count("zero") == 9 * 9 - 7 * 7 and labels.count("pixel") == 49
    windows = [patch for patch in left.patches if patch.get_label().startswith("window")]
    assert [round(w.get_x()) for w in windows] == [0, 2, 4]  # stride 2 apart, from the padded row's first pixel
    assert len(right.patches) == output_size(7, 3, 2, 1) ** 2 == 16
    assert "= 4" in fig._suptitle.get_text()
    assert len([p for p in stride_padding_figure(5, 3, 1, 0, windows=9).axes[0].patches
                if p.get_label().startswith("window")]) == 3  # never more windows than outputs in a row
    with pytest.raises(ValueError, match="does not fit"):
        stride_padding_figure(2, 5, 1, 0)


def test_shift_change_is_the_relative_change_of_the_pooled_edge_maps():
    from cbir_tutorial.lessons.convolution import shift_change

    step = np.ones((8, 12), dtype=np.float32)
    step[:, 5:7] = 0.0  # a dark stripe on white: two vertical edges, and white columns to wrap round
    kernel = KERNELS["vertical edges"]
    a, b = np.abs(convolve(step, kernel)), np.abs(convolve(np.roll(step, 1, axis=1), kernel))
    change = shift_change(step, kernel, windows=(1, 2))
    assert list(change) == [1, 2]
    assert change[1] == pytest.approx(np.abs(a - b).mean() / a.mean())
    assert change[2] == pytest.approx(np.abs(pool(a) - pool(b)).mean() / pool(a).mean())
    assert shift_change(step, kernel, windows=(1,), shift=0) == {1: 0.0}


def test_shift_change_with_same_padding_is_diluted_by_the_frame(photo):
    from cbir_tutorial.lessons.convolution import shift_change

    g = grey(photo)
    kernel = KERNELS["vertical edges"]
    framed = np.abs(convolve(g, kernel, padding="same"))
    border = framed[:, [0, -1]].sum() / framed.sum()  # zeros meet the white background: bright border columns
    assert border > 0.1, border
    assert shift_change(g, kernel, padding="same")[1] < shift_change(g, kernel)[1]


def test_pooling_makes_the_edge_map_less_sensitive_to_a_shift_on_every_sample_photo(sample_catalogue):
    """Notebook 2's claim, and its `otherwise` text: the order holds on each photo of the sample."""
    from cbir_tutorial.lessons.convolution import shift_change

    broken = []
    for path in sample_catalogue.table["path"]:
        change = shift_change(grey(load_rgb(path)), KERNELS["vertical edges"], windows=(1, 2, 4))
        if not change[4] < change[2] < change[1]:
            broken.append((path, change))
    assert len(sample_catalogue) == 770 and not broken, broken[:5]
