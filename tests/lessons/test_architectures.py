import keras
import numpy as np
import pytest

from cbir_tutorial.lessons.architectures import (backbone_summary, conv_cost, conv_vs_separable, layer_table,
                                         preprocessing_of, receptive_field, residual_block_model,
                                         separable_conv_cost, small_cnn, small_cnn_parameters,
                                         vgg_stack_vs_large_kernel)


@pytest.mark.parametrize("input_shape, filters, dense, n_classes, kernel", [
    ((64, 64, 3), (16, 32), 64, 10, 3),
    ((80, 60, 3), (8,), 32, 30, 5),
    ((224, 224, 3), (32, 64, 128), 256, 1000, 3),
])
def test_small_cnn_parameters_by_hand_equal_keras(input_shape, filters, dense, n_classes, kernel):
    model = small_cnn(input_shape, filters, dense, n_classes, kernel)
    table = small_cnn_parameters(input_shape, filters, dense, n_classes, kernel)
    assert table["parameters"].sum() == model.count_params()
    keras_table = layer_table(model).iloc[1:]  # without the input layer
    assert table["layer"].tolist() == keras_table["layer"].tolist()
    assert table["output_shape"].tolist() == keras_table["output_shape"].tolist()
    assert table["parameters"].tolist() == keras_table["parameters"].tolist()


def test_small_cnn_default_numbers():
    table = small_cnn_parameters().set_index("layer")
    assert table.loc["conv1", "parameters"] == 3 * 3 * 3 * 16 + 16 == 448
    assert table.loc["conv1", "formula"] == "3*3*3*16 + 16"
    assert table.loc["pool2", "output_shape"] == (14, 14, 32)
    assert table.loc["dense", "parameters"] == 14 * 14 * 32 * 64 + 64  # the flatten -> dense layer dominates


def test_receptive_field():
    assert receptive_field([(3, 1)]) == 3
    assert receptive_field([(3, 1)] * 2) == 5
    assert receptive_field([(3, 1)] * 3) == 7
    assert receptive_field([(7, 2), (3, 2)]) == 11  # ResNet50's stem: 7x7/2 conv then 3x3/2 pool
    assert receptive_field([(3, 1), (3, 1), (2, 2), (3, 1)]) == 10


def test_vgg_stack_vs_large_kernel():
    table = vgg_stack_vs_large_kernel(channels=256, depth=3)
    assert table["receptive_field"].tolist() == [7, 7]
    assert table["weights"].tolist() == [27 * 256 * 256, 49 * 256 * 256]
    assert table["nonlinearities"].tolist() == [3, 1]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("c_in, c_out, kernel", [(64, 128, 3), (3, 32, 5), (728, 728, 3)])
def test_conv_costs_equal_keras_layers(c_in, c_out, kernel, bias):
    conv = keras.layers.Conv2D(c_out, kernel, padding="same", use_bias=bias)
    conv.build((None, 10, 10, c_in))
    separable = keras.layers.SeparableConv2D(c_out, kernel, padding="same", use_bias=bias)
    separable.build((None, 10, 10, c_in))
    assert conv_cost(10, 10, c_in, c_out, kernel, bias)["parameters"] == conv.count_params()
    assert separable_conv_cost(10, 10, c_in, c_out, kernel, bias)["parameters"] == separable.count_params()


def test_multiply_adds_and_the_xception_ratio():
    assert conv_cost(147, 147, 64, 128)["multiply-adds"] == 147 * 147 * 9 * 64 * 128
    assert separable_conv_cost(147, 147, 64, 128)["multiply-adds"] == 147 * 147 * (9 * 64 + 64 * 128)
    table = conv_vs_separable()
    assert table.loc["parameters", "regular conv"] == 73_728
    assert table.loc["parameters", "separable conv"] == 8_768
    assert table.loc["multiply-adds", "regular / separable"] == pytest.approx(73_728 / 8_768)  # 8.41, not rounded
    middle = conv_vs_separable(19, 19, 728, 728).loc["parameters", "regular / separable"]
    assert middle == pytest.approx(1 / (1 / 728 + 1 / 9)) and f"{middle:.2f}" == "8.89"


def test_residual_block_shapes_and_shortcuts():
    identity = residual_block_model((14, 14, 256), filters=64)
    assert identity.output.shape[1:] == (14, 14, 256)
    assert "block_0_conv" not in [layer.name for layer in identity.layers]
    projection = residual_block_model((14, 14, 64), filters=64, stride=2)
    assert projection.output.shape[1:] == (7, 7, 256)
    assert projection.get_layer("block_0_conv").strides == (2, 2)


def test_skip_connection_passes_the_input_when_the_branch_is_silent():
    block = residual_block_model((8, 8, 256), filters=64, seed=3)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 256)).astype(np.float32)
    assert not np.allclose(np.asarray(block(x)), np.maximum(x, 0), atol=1e-3)
    last_bn = block.get_layer("block_3_bn")
    gamma, beta, mean, variance = last_bn.get_weights()
    last_bn.set_weights([np.zeros_like(gamma), np.zeros_like(beta), mean, variance])
    np.testing.assert_allclose(np.asarray(block(x)), np.maximum(x, 0), atol=1e-6)


@pytest.mark.slow
def test_residual_block_equals_keras_resnet50_blocks():
    resnet = keras.applications.ResNet50(weights=None, include_top=False)
    for keras_block, shape in (("conv2_block1", (56, 56, 64)), ("conv2_block2", (56, 56, 256)),
                               ("conv3_block1", (56, 56, 256))):
        stride = 2 if keras_block == "conv3_block1" else 1
        filters = 128 if keras_block.startswith("conv3") else 64
        ours = residual_block_model(shape, filters, stride, name=keras_block)
        theirs = {layer.name: layer.count_params() for layer in resnet.layers
                  if layer.name.startswith(keras_block + "_")}
        assert {layer.name: layer.count_params() for layer in ours.layers[1:]} == theirs


@pytest.mark.slow
def test_separable_cost_equals_a_real_xception_layer():
    xception = keras.applications.Xception(weights=None, include_top=False, input_shape=(299, 299, 3))
    layer = xception.get_layer("block2_sepconv1")
    assert tuple(layer.input.shape[1:]) == (147, 147, 64)
    assert layer.count_params() == conv_vs_separable().loc["parameters", "separable conv"]


def test_preprocessing_is_measured():
    assert preprocessing_of("xception") == "scale 0..255 to -1..1"
    assert preprocessing_of("efficientnet_lite0") == "scale 0..255 to -0.992188..1"
    assert preprocessing_of("resnet50").startswith("BGR, minus the ImageNet mean per channel (black -> [-103.9")
    assert preprocessing_of("vgg16") == preprocessing_of("resnet50")


def test_backbone_summary():
    row = backbone_summary("xception")
    assert row == {"backbone": "Xception", "input": "299x299x3", "preprocessing": "scale 0..255 to -1..1",
                   "feature layer": "avg_pool", "feature width": 2048}
    model = small_cnn((32, 32, 3), (4,), 8, 5)
    row = backbone_summary("efficientnet_lite0", model, weights="random")
    assert row["measured width"] == 5 and row["parameters"] == model.count_params() and row["weights"] == "random"


def test_multiply_adds_counts_convolutions_and_dense_layers_from_their_shapes():
    from cbir_tutorial.lessons.architectures import multiply_adds, separable_conv_cost, small_cnn

    # conv1 62*62 positions * 3*3*3*16, conv2 29*29 * 3*3*16*32, dense 6272*64, classes 64*10
    expected = 62 * 62 * 27 * 16 + 29 * 29 * 144 * 32 + 6272 * 64 + 64 * 10
    assert multiply_adds(small_cnn((64, 64, 3), (16, 32), 64, 10)) == expected

    inputs = keras.Input((19, 19, 64))
    separable = keras.layers.SeparableConv2D(128, 3, padding="same")(inputs)
    depthwise = keras.layers.DepthwiseConv2D(3, padding="same")(inputs)
    model = keras.Model(inputs, [separable, depthwise])
    assert multiply_adds(model) == separable_conv_cost(19, 19, 64, 128)["multiply-adds"] + 19 * 19 * 9 * 64


def test_weights_file_parameters_count_what_the_package_downloads():
    from cbir_tutorial.lessons.architectures import weights_file_parameters

    # ResNet50's file with its head (shared by notebook 3's classifier and the features): 25.6 M
    # parameters, the 23.6 M of its feature part and 2,049,000 of the 1000-class dense layer
    assert weights_file_parameters("resnet50") == 23_587_712 + 2048 * 1000 + 1000


def test_photos_per_second_times_batches_after_an_untimed_warm_up_and_keeps_the_fastest():
    from cbir_tutorial.lessons.architectures import photos_per_second

    class Slow:
        input_size = 32
        calls = []

        def features_of_pixels(self, batch):
            import time
            self.calls.append(batch.shape)
            # the warm-up is slow and must not count; the second timed batch was disturbed: the fastest counts
            time.sleep({1: 0.5, 3: 0.3}.get(len(self.calls), 0.05))
            return np.zeros((len(batch), 4))

    rate = photos_per_second(Slow(), n=4)
    assert Slow.calls == [(2, 32, 32, 3)] + [(4, 32, 32, 3)] * 3
    assert 20 < rate <= 80  # 4 photos in about 0.05 s


def figure_texts(fig) -> dict:
    """``{gid: text}`` of every labelled text in ``fig``."""
    return {t.get_gid(): t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid()}


def shape_words(tensor) -> str:
    return "x".join(str(n) for n in tensor.shape[1:])


@pytest.mark.slow
def test_bottleneck_figure_labels_carry_the_real_resnet50_blocks():
    from cbir_tutorial.lessons.architectures import bottleneck_figure

    resnet = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(224, 224, 3))
    blocks = ("conv2_block1", "conv2_block2", "conv3_block1", "conv4_block1")
    fig = bottleneck_figure(blocks=blocks)  # its own ResNet50: the default
    texts = figure_texts(fig)
    for ax, block in zip(fig.axes, blocks):
        convs = {name.split("_")[2]: layer for layer in resnet.layers
                 if (name := layer.name).startswith(block + "_") and name.endswith("_conv")}
        assert set(convs) == ({"0", "1", "2", "3"} if block != "conv2_block2" else {"1", "2", "3"})
        for step, conv in convs.items():
            label = texts[f"{block}_{step}_conv"]
            kernel, filters = conv.kernel_size, conv.filters
            assert f"{kernel[0]}x{kernel[1]} conv," in label and f"{filters} filters" in label, (block, step, label)
            assert ("stride 2" in label) == (conv.strides == (2, 2)), (block, step, label)
            assert texts[f"{block}_{step}_conv shape"] == shape_words(conv.output), (block, step)
        assert (f"{block} identity" in texts) == ("0" not in convs)
        assert texts[f"{block} input"] == f"input x: {shape_words(convs['1'].input)}"
        assert texts[f"{block}_out"] == f"ReLU → output {shape_words(resnet.get_layer(block + '_out').output)}"
        params = sum(layer.count_params() for layer in resnet.layers if layer.name.startswith(block + "_"))
        kind = "identity" if "0" not in convs else "projection"
        assert ax.get_title() == f"{block}: {kind} shortcut\n{params:,} parameters"
    # the numbers of notebook 4's panels, by hand: conv3_block1 narrows 256 channels to 128, widens to 512
    assert texts["conv3_block1_1_conv"] == "1x1 conv, 128 filters\nstride 2, BN, ReLU"
    assert texts["conv3_block1_3_conv shape"] == "28x28x512"


def test_bottleneck_figure_reads_the_package_block():
    from cbir_tutorial.lessons.architectures import bottleneck_figure, bottleneck_layers

    projection = residual_block_model((14, 14, 64), filters=32, stride=2)
    found = bottleneck_layers(projection, "block")
    assert found["input"] == "14x14x64" and found["output"] == "7x7x128"
    assert found["0"] == {"kernel": (1, 1), "filters": 128, "stride": 2, "output": "7x7x128"}
    assert [found[s]["filters"] for s in "123"] == [32, 32, 128]
    assert found["params"] == projection.count_params()
    texts = figure_texts(bottleneck_figure(projection, blocks=["block"]))
    assert texts["block_0_conv"] == "shortcut:\n1x1 conv,\n128 filters,\nstride 2,\nBN"
    assert texts["block_2_conv"] == "3x3 conv, 32 filters\nBN, ReLU"
    identity = figure_texts(bottleneck_figure(residual_block_model((8, 8, 64), filters=16), blocks=["block"]))
    assert "block_0_conv" not in identity and identity["block identity"].startswith("shortcut:\nidentity")


@pytest.mark.parametrize("shape", [(147, 147, 64, 128, 3), (19, 19, 728, 728, 3), (10, 12, 3, 32, 5)])
def test_separable_figure_numbers_are_the_computed_costs(shape):
    from cbir_tutorial.lessons.architectures import separable_figure, separable_steps_cost

    height, width, c_in, c_out, kernel = shape
    table = conv_vs_separable(height, width, c_in, c_out, kernel)
    steps = separable_steps_cost(height, width, c_in, c_out, kernel)
    assert steps["regular"] == table.loc["multiply-adds", "regular conv"]
    assert steps["separable"] == table.loc["multiply-adds", "separable conv"] == steps["depthwise"] + steps["pointwise"]
    assert steps["depthwise"] == height * width * kernel * kernel * c_in  # one k x k filter per channel
    assert steps["pointwise"] == height * width * c_in * c_out
    fig = separable_figure(height, width, c_in, c_out, kernel)
    texts = figure_texts(fig)
    for step in ("regular", "depthwise", "pointwise"):
        assert texts[f"{step} multiply-adds"].endswith(f"= {steps[step]:,}"), step
    title = fig.axes[0].get_title()
    regular, separable = table.loc["multiply-adds", "regular conv"], table.loc["multiply-adds", "separable conv"]
    assert f"{regular:,} regular, {separable:,} separable" in title
    assert f"{table.loc['multiply-adds', 'regular / separable']:.1f} times fewer" in title
    assert f"{c_in} filters,\n{kernel}x{kernel}x1 each" in texts["depthwise filters"]
    assert f"{c_out} filters,\n1x1x{c_in}" in texts["pointwise filters"]


def test_multiply_adds_by_layer_names_each_convolution_and_dense_layer_and_sums_to_the_total():
    from cbir_tutorial.lessons.architectures import multiply_adds, multiply_adds_by_layer, small_cnn

    model = small_cnn((64, 64, 3), (16, 32), 64, 10)
    by_layer = multiply_adds_by_layer(model)
    assert by_layer.to_dict() == {"conv1": 62 * 62 * 27 * 16, "conv2": 29 * 29 * 144 * 32,
                                  "dense": 6272 * 64, "classes": 64 * 10}
    assert by_layer.sum() == multiply_adds(model)
