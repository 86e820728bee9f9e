"""Feature extraction end to end: the original tutorial's per-image loop vs the package's batched pipeline.

Both read the same JPEGs of the sample catalogue, decode, resize, preprocess, run the same Keras model and
L2-normalise; each repeat runs both pipelines one after the other in this process (medians of the
repeats; the ratio is what to compare across machines). They resize differently (``load_img``: nearest
neighbour, the package: bilinear), so the table also checks that on the same pixels their features agree.
Also: the model alone on pixels already in memory, and the arithmetic rate (model FLOPs x images/s)
against the CPU's float32 peak (cores x measured clock x FLOPs/cycle of its SIMD units) and against a
measured float32 matrix product.

    python benchmarks/bench_extraction.py            # resnet50 (random weights) + efficientnet_lite0 (ImageNet)
    python benchmarks/bench_extraction.py --smoke    # a few images, seconds
    python benchmarks/bench_extraction.py --backbones vgg16 resnet50 xception efficientnet_lite0 \
        --mixed-precision both                       # on a GPU: every backbone, with and without mixed precision

``--batch-size 0`` (the default) takes the package's default for the device (128 with a GPU, 32 on a CPU);
``--mixed-precision auto`` measures both settings when TensorFlow sees a GPU, float32 only on a CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from common import (add_json_option, measured_ghz, median_seconds, note, peak_fp32_flops, print_header,
                    print_table, sample_catalogue, write_json)

#: ``--weights auto``: what each backbone is benchmarked with (speed does not depend on the values).
DEFAULT_WEIGHTS = {"efficientnet_lite0": "imagenet"}


def model_flops(model) -> int:
    """FLOPs of one forward pass of one image: 2 x multiply-accumulates of every Conv2D, DepthwiseConv2D,
    SeparableConv2D and Dense layer, from the layers' input and output shapes (nested models included).
    Batch norm, activations, pooling and additions are left out (a few % of a CNN's work)."""
    import keras

    macs = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.Model):
            continue  # its layers are visited by the recursion
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                                  keras.layers.SeparableConv2D, keras.layers.Dense)):
            continue
        in_shape, out_shape = tuple(layer.input.shape), tuple(layer.output.shape)
        positions = int(np.prod(out_shape[1:-1], dtype=np.int64))  # output pixels (1 for a plain Dense)
        c_in, c_out = in_shape[-1], out_shape[-1]
        if isinstance(layer, keras.layers.Dense):
            macs += positions * c_in * c_out
            continue
        kh, kw = layer.kernel_size
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            macs += positions * c_out * kh * kw
        elif isinstance(layer, keras.layers.SeparableConv2D):
            depth = c_in * layer.depth_multiplier
            macs += positions * depth * kh * kw + positions * depth * c_out
        else:
            macs += positions * c_out * kh * kw * c_in // layer.groups
    return 2 * macs


def measured_sgemm_flops(size: int = 2048, repeats: int = 3) -> float:
    """FLOP/s of a ``size`` x ``size`` float32 matrix product through numpy's BLAS: a practical ceiling."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    seconds, _ = median_seconds(lambda: a @ b, repeats)
    return 2 * size ** 3 / seconds


def original_loop_features(model, preprocess, paths: list[str], size: int) -> np.ndarray:
    """The original tutorial's loop: one ``load_img`` and one ``model.predict`` per image, then normalise."""
    import keras

    features = []
    for path in paths:
        img = keras.utils.load_img(path, target_size=(size, size))
        x = keras.utils.img_to_array(img)
        x = np.expand_dims(x, axis=0)
        x = preprocess(x)
        feature = model.predict(x, verbose=0)[0]
        features.append(feature / np.linalg.norm(feature))
    return np.array(features, dtype=np.float32)


def keras_pixels(path: str, size: int) -> np.ndarray:
    """``(size, size, 3)`` float32 pixels as ``keras.utils.load_img`` resizes them (nearest neighbour)."""
    import keras

    return keras.utils.img_to_array(keras.utils.load_img(path, target_size=(size, size)))


def benchmark_backbone(name: str, weights, paths: list[str], repeats: int, batch_size: int,
                       peak: float, sgemm: float, mixed_precision=False) -> list[dict]:
    """Table rows for one backbone: original loop, package pipeline, model alone."""
    from cbir_tutorial import FeatureExtractor
    from cbir_tutorial.models.weights import weights_label

    extractor = FeatureExtractor(name, weights, batch_size=batch_size, mixed_precision=mixed_precision)
    batch_size = extractor.batch_size
    size = extractor.input_size
    preprocess = extractor.spec.preprocess_function()
    flops = model_flops(extractor.model)

    def original():
        return original_loop_features(extractor.model, preprocess, paths, size)

    def package():
        return extractor.extract(paths, cache=False, progress=False).features

    pixels = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3)).astype(np.float32)

    def model_only():
        return extractor.features_of_pixels(pixels)

    original_loop_features(extractor.model, preprocess, paths[:2], size)  # warm-up: predict function
    package()  # warm-up: traces the tf.function
    model_only()
    times = {"original": [], "package": [], "model": []}
    for _ in range(repeats):  # interleaved, so a busy spell on a shared machine hits both pipelines
        for key, fn in (("original", original), ("package", package), ("model", model_only)):
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    a, b = original(), package()
    agreement = float(np.mean(np.sum(a * b, axis=1)))
    nearest = np.stack([keras_pixels(path, size) for path in paths])  # load_img's resize, package's model
    same_pixels = float(np.mean(np.sum(a * extractor.features_of_pixels(nearest), axis=1)))

    label = weights_label(weights)
    rows = []
    medians = {key: float(np.median(value)) for key, value in times.items()}
    counts = {"original": len(paths), "package": len(paths), "model": batch_size}
    for key, title in (("original", "original loop (load_img + predict per image)"),
                       ("package", f"package FeatureExtractor.extract (batch {batch_size})"),
                       ("model", f"model only, pixels in memory (batch {batch_size})")):
        rate = counts[key] / medians[key]
        rows.append({
            "backbone": name, "weights": label, "precision": extractor.precision or "float32",
            "pipeline": title, "images": counts[key],
            "median s": medians[key], "img/s": rate,
            "x original": rate / (counts["original"] / medians["original"]),
            "GFLOP/img": flops / 1e9, "GFLOP/s": flops * rate / 1e9,
            "% peak": 100 * flops * rate / peak, "% measured SGEMM": 100 * flops * rate / sgemm,
        })
    for row in rows:
        row["% model only"] = 100 * row["img/s"] / rows[2]["img/s"]
    rows[0]["cos(original, package)"] = agreement
    rows[0]["cos, same load_img pixels"] = same_pixels  # the original's resize fed to the package's model
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "efficientnet_lite0"])
    parser.add_argument("--weights", default="auto",
                        help="'auto' (efficientnet_lite0: ImageNet, others: random), 'imagenet' or 'random'")
    parser.add_argument("--images", type=int, default=200, help="sample images, the same for both pipelines")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=0, help="0: the package's default for the device")
    parser.add_argument("--mixed-precision", choices=("auto", "off", "on", "both"), default="auto",
                        help="model precision: 'auto' = both with a GPU, off on a CPU")
    parser.add_argument("--smoke", action="store_true", help="2 images, batch 2, 1 repeat: checks the script runs")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.batch_size, args.repeats = 2, 2, 1

    print_header("Feature extraction: original per-image loop vs batched package pipeline",
                 ("numpy", "tensorflow", "keras", "PIL"))
    _, nominal = peak_fp32_flops()
    peak, how = peak_fp32_flops(ghz=measured_ghz(runs=1 if args.smoke else 3))
    gemm_size = 512 if args.smoke else 2048
    sgemm = measured_sgemm_flops(gemm_size)
    note(f"Float32 peak at the nominal clock: {nominal}")
    note(f"Float32 peak (the '% peak' column): {how}")
    note(f"Measured float32 matrix product (numpy's BLAS, {gemm_size}^3): {sgemm / 1e9:.0f} GFLOP/s")
    catalogue = sample_catalogue()
    paths = catalogue.paths[:args.images]
    note(f"Images: the first {len(paths)} of {catalogue.name} ({len(catalogue)} photos, 60x80 JPEG); "
         f"{args.repeats} interleaved repeats, medians\n")

    from cbir_tutorial.models.features import gpus

    settings = {"off": [False], "on": [True], "both": [False, True],
                "auto": [False, True] if gpus() else [False]}[args.mixed_precision]
    rows = []
    for name in args.backbones:
        weights = {"auto": DEFAULT_WEIGHTS.get(name), "imagenet": "imagenet", "random": None}[args.weights]
        for mixed in settings:
            rows += benchmark_backbone(name, weights, paths, args.repeats, args.batch_size, peak, sgemm, mixed)
    if not rows:
        note("No backbone could be benchmarked.")
        write_json(args.json)
        return 1
    print_table("Extraction throughput (images/s, medians)", rows,
                ["backbone", "weights", "precision", "pipeline", "images", "median s", "img/s", "x original",
                 "% model only",
                 "GFLOP/img", "GFLOP/s", "% peak", "% measured SGEMM", "cos(original, package)",
                 "cos, same load_img pixels"])
    for row in rows:
        if row["pipeline"].startswith("package"):
            verdict = "met" if row["x original"] >= 1.5 else "NOT met"
            note(f"{row['backbone']} ({row['precision']}): package = {row['x original']:.2f}x the original loop "
                 f"(target >= 1.5x: {verdict}), {row['% model only']:.0f} % of the model-only rate")
    write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
