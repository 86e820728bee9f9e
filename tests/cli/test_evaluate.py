"""``python -m cbir_tutorial evaluate``: leave-one-out MAP@K of a catalogue as a table or JSON, the files it
could not read listed with their reasons; a user's mistake (catalogue, format, backbone, weights, index) is
one error line and exit status 2."""

import importlib.util
import json
import os

import pytest

from cbir_tutorial.cli import main

#: The start of a legacy ``torch.save`` file: torch's magic number, its protocol version, the system's byte order.
TORCH_HEADER = (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})


@pytest.mark.slow
def test_evaluate_json_on_the_sample(sample_dir, capsys):
    status = main(["evaluate", "--catalogue", str(sample_dir), "--format", "fashion-products",
                   "--backbone", "efficientnet_lite0", "--k", "10", "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    result = json.loads(captured.out)
    assert {"backbone", "k", "n_images", "n_queries", "map_at_k", "precision_at_k", "per_category",
            "skipped"} <= set(result)
    assert result["backbone"] == "efficientnet_lite0" and result["k"] == 10
    assert result["n_images"] == 770 and result["skipped"] == []
    assert 0 < result["n_queries"] <= 770
    assert 0.5 < result["map_at_k"] <= 1 and 0.4 < result["precision_at_k"] <= 1
    assert result["per_category"]["Watches"]["n_queries"] > 10


def test_evaluate_table_reports_skipped_files(tmp_path, sample_dir, capsys):
    shop = tmp_path / "shop"
    for category in ("bags", "shoes"):
        (shop / category).mkdir(parents=True)
    photos = sorted((sample_dir / "images").glob("*.jpg"))
    for i, photo in enumerate(photos[:6]):
        (shop / ("bags" if i < 3 else "shoes") / photo.name).write_bytes(photo.read_bytes())
    (shop / "shoes" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    status = main(["evaluate", "--catalogue", str(shop), "--format", "folder", "--backbone", "efficientnet_lite0",
                   "--k", "2", "--no-cache"])
    out = capsys.readouterr().out
    assert status == 0
    assert "6 of 7 images indexed, 1 skipped" in out and "broken.jpg" in out and "MAP@2 =" in out


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--catalogue", "/no/such/folder", "--format", "folder"], "/no/such/folder"),
    (["evaluate", "--catalogue", ".", "--format", "pinterest"], "--format pinterest: format='pinterest' is not supported"),
    (["evaluate", "--catalogue", "SAMPLE", "--format", "fashion-products", "--backbone", "alexnet"],
     "Unknown backbone 'alexnet'"),
])
def test_user_errors_are_one_line_without_traceback(argv, message, sample_dir, capsys):
    argv = [str(sample_dir) if a == "SAMPLE" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("error: ")


def test_sample_format_needs_no_path_and_folder_format_does(capsys):
    assert main(["evaluate", "--format", "folder"]) == 2
    assert "format='folder' needs a catalogue folder, not 'auto'" in capsys.readouterr().err
    assert main(["evaluate", "--format", "sample", "--backbone", "efficientnet_lite0", "--limit", "60",
                 "--k", "3"]) == 0
    assert "MAP@3 =" in capsys.readouterr().out


def test_empty_folder_says_no_images(tmp_path, capsys):
    assert main(["evaluate", "--catalogue", str(tmp_path), "--format", "folder"]) == 2
    assert "no images" in capsys.readouterr().err.lower()


def test_a_hostile_folder_is_indexed_without_its_bad_files(tmp_path, sample_dir, capsys):
    """An EPS drawing named .jpg (never given to Ghostscript), a PNG text bomb and a file name that is not
    UTF-8: each left out with its reason, the rest indexed and evaluated."""
    import io
    import struct
    import zlib

    from PIL import Image

    shop = tmp_path / "shop"
    photos = sorted((sample_dir / "images").glob("*.jpg"))
    for i, photo in enumerate(photos[:6]):
        (shop / ("bags" if i < 3 else "shoes")).mkdir(parents=True, exist_ok=True)
        (shop / ("bags" if i < 3 else "shoes") / photo.name).write_bytes(photo.read_bytes())
    (shop / "shoes" / "drawing.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    text = b"Comment\x00\x00" + zlib.compress(b"a" * 50_000_000, 9)
    bomb = struct.pack(">I", len(text)) + b"zTXt" + text + struct.pack(">I", zlib.crc32(b"zTXt" + text))
    (shop / "bags" / "bomb.png").write_bytes(buffer.getvalue()[:33] + bomb + buffer.getvalue()[33:])
    with open(os.fsencode(shop / "bags") + b"/caf\xe9.jpg", "wb") as file:
        file.write(photos[7].read_bytes())
    status = main(["evaluate", "--catalogue", str(shop), "--format", "folder", "--backbone", "efficientnet_lite0",
                   "--k", "2", "--no-cache"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    out = captured.out
    assert (f"load_folder({str(shop)!r}): kept 8 of 9 listings; dropped 1 whose file name is not UTF-8 (such as "
            "b'bags/caf\\xe9.jpg'): rename them to include them") in out
    assert "6 of 8 images indexed, 2 skipped" in out and "MAP@2 =" in out
    assert ("drawing.jpg: EPS format, not one of the accepted image formats (JPEG, PNG, WEBP, GIF, BMP, TIFF); "
            "convert it to JPEG or PNG") in out
    assert "bomb.png: corrupt or unsafe image (Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK)" in out
    assert "unexpected" not in out and "Traceback" not in captured.err


def test_a_weights_file_that_is_not_hdf5_is_one_line(tmp_path, capsys):
    weights = tmp_path / "mine.weights.h5"
    weights.write_text("not HDF5 at all\n")
    assert main(["evaluate", "--catalogue", "sample", "--limit", "30", "--backbone", "efficientnet_lite0",
                 "--weights", str(weights), "--no-cache"]) == 2
    assert capsys.readouterr().err == (
        f"error: weights file {weights}: not Keras weights for EfficientNet-Lite0 (Unable to synchronously open file "
        "(file signature not found)); use a .weights.h5 file saved with model.save_weights(), 'imagenet' or "
        "'random'\n")


def test_shipped_weights_whose_pickle_would_run_code_are_one_line(tmp_path, monkeypatch, capsys):
    """The pip package's .pth replaced by a pickle calling os.system: refused, nothing run, one line."""
    import pickle

    from cbir_tutorial.models import efficientnet_lite as lite

    mark = tmp_path / "ran"
    header = b"".join(pickle.dumps(v, protocol=2) for v in TORCH_HEADER)
    evil = tmp_path / "efficientnet_lite0.pth"
    evil.write_bytes(header + f"cposix\nsystem\n(S'touch {mark}'\ntR.".encode())
    monkeypatch.setattr(lite, "torch_weights_path", lambda variant: evil)
    monkeypatch.setenv("CBIR_TUTORIAL_CACHE", str(tmp_path / "cache"))  # nothing converted yet
    assert main(["evaluate", "--catalogue", "sample", "--limit", "30", "--backbone", "efficientnet_lite0",
                 "--no-cache"]) == 2
    assert capsys.readouterr().err == (f"error: {evil}: refusing to load global posix.system from a weights file; "
                                       "replace the file (a weights file holds tensors only)\n")
    assert not mark.exists()


def test_half_evaluates_one_half_only(capsys):
    assert main(["evaluate", "--catalogue", "sample", "--k", "10", "--json", "--half", "report"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["half"] == "report" and 300 < result["n_images"] < 470 and result["recipe"] == "baseline"


def test_cli_index_choice_is_checked_and_used(capsys):
    base = ["evaluate", "--format", "sample", "--backbone", "efficientnet_lite0", "--limit", "60", "--json"]
    assert main(base + ["--index", "annoy"]) == 2
    assert "error: --index 'annoy' is not supported; use one of: exact, faiss-flat" in capsys.readouterr().err
    assert main(base + ["--index-uri", "http://localhost:19530"]) == 2
    assert "error: --index-uri is for --index milvus, not --index exact" in capsys.readouterr().err
    if importlib.util.find_spec("faiss") is None:
        pytest.skip('faiss is not installed (pip install ".[scale]")')
    scores = {}
    for name in ("exact", "faiss-flat"):
        assert main(base + ["--index", name]) == 0
        scores[name] = json.loads(capsys.readouterr().out)
    assert scores["exact"]["n_images"] == scores["faiss-flat"]["n_images"] > 0
    assert scores["faiss-flat"]["map_at_k"] == pytest.approx(scores["exact"]["map_at_k"], abs=1e-6)
