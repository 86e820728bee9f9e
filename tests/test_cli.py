import json
import os
import subprocess
import sys

import pytest

from cbir_tutorial.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_search_prints_the_top_k_and_writes_a_grid(sample_dir, tmp_path, capsys):
    query = sorted((sample_dir / "images").glob("*.jpg"))[5]
    out_png = tmp_path / "grid.png"
    status = main(["search", "--catalogue", str(sample_dir), "--format", "fashion-products",
                   "--backbone", "efficientnet_lite0", "--query", str(query), "--k", "4", "--out", str(out_png)])
    out = capsys.readouterr().out
    assert status == 0
    assert "Top 4 of 770 products" in out and out_png.stat().st_size > 10_000
    table_lines = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(table_lines) == 4 and table_lines[0].split()[0] == "1"


def test_search_and_demo_take_a_photo_url(sample_dir, photo_server, tmp_path, capsys):
    base, photo = photo_server
    url = f"{base}/photo.jpg"
    status = main(["search", "--catalogue", str(sample_dir), "--format", "fashion-products",
                   "--backbone", "efficientnet_lite0", "--query", url, "--k", "3", "--out", str(tmp_path / "s.png")])
    out = capsys.readouterr().out
    assert status == 0 and f"Top 3 of 770 products for {url}" in out and (tmp_path / "s.png").stat().st_size > 10_000
    table_lines = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(table_lines) == 3 and float(table_lines[0][-1]) < 1e-3  # the sample's own photo comes first
    status = main(["demo", "--backbone", "efficientnet_lite0", "--query", url, "--k", "5",
                   "--out", str(tmp_path / "d.png")])
    out = capsys.readouterr().out
    assert status == 0 and f"Top 5 for query: {url}" in out and (tmp_path / "d.png").is_file()


@pytest.mark.parametrize("command", ["search", "demo"])
@pytest.mark.parametrize("path, said", [("/page.html", "the server sent text/html, not an image"),
                                        ("/missing.jpg", "the server answered 404 Not Found"),
                                        ("/fake.jpg", "not an image file Pillow can read"),
                                        ("/shoe.eps", "EPS format, not one of the accepted image formats (JPEG, "
                                                      "PNG, WEBP, GIF, BMP, TIFF); convert it to JPEG or PNG"),
                                        ("/to-ftp", "redirected to ftp://127.0.0.1/photo.jpg, which is not an "
                                                    "http(s) address")])
def test_a_bad_photo_url_is_one_line_before_any_indexing(command, path, said, photo_server, capsys):
    base, _ = photo_server
    argv = [command, "--backbone", "efficientnet_lite0", "--query", f"{base}{path}"]
    assert main(argv + (["--catalogue", "/no/such/folder"] if command == "search" else [])) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {base}{path}: {said}\n" and captured.out == ""


@pytest.mark.parametrize("command", ["search", "demo"])
def test_a_password_in_a_query_url_is_never_printed(command, photo_server, capsys):
    base, _ = photo_server
    host = base.removeprefix("http://")
    argv = [command, "--backbone", "efficientnet_lite0", "--query", f"http://ann:wrong@{host}/private.jpg"]
    assert main(argv + (["--catalogue", "/no/such/folder"] if command == "search" else [])) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: http://***@{host}/private.jpg: the server answered 401 Unauthorized\n"
    assert captured.out == ""


@pytest.mark.parametrize("command", ["search", "demo"])
def test_a_missing_query_file_is_one_line_before_any_indexing(command, sample_dir, tmp_path, capsys):
    missing = tmp_path / "no-such-photo.jpg"
    argv = [command, "--backbone", "efficientnet_lite0", "--query", str(missing)]
    assert main(argv + (["--catalogue", str(sample_dir)] if command == "search" else [])) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"error: --query {missing}: no such file; give an image file or an http(s) address "
                            "of a photo\n")
    assert captured.out == ""


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


def test_demo_runs_headless_and_falls_back_offline(tmp_path):
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"), PYTHONPATH=ROOT)
    run = subprocess.run([sys.executable, "-m", "cbir_tutorial", "demo", "--out", str(tmp_path / "demo.png")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    if "unavailable (offline?)" in out:  # no internet: one clear line, then the offline backbone
        assert "-> using EfficientNet-Lite0, ImageNet weights (shipped with pip) instead." in out
    assert "Top 10 for" in out and "MAP@10 =" in out
    assert f"Result grid written to {tmp_path / 'demo.png'}" in out and (tmp_path / "demo.png").is_file()


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
    from cbir_tutorial.models import torch_pickle

    mark = tmp_path / "ran"
    header = b"".join(pickle.dumps(v, protocol=2) for v in (torch_pickle._TORCH_MAGIC, 1001, {"little_endian": True}))
    evil = tmp_path / "efficientnet_lite0.pth"
    evil.write_bytes(header + f"cposix\nsystem\n(S'touch {mark}'\ntR.".encode())
    monkeypatch.setattr(lite, "torch_weights_path", lambda variant: evil)
    monkeypatch.setenv("CBIR_TUTORIAL_CACHE", str(tmp_path / "cache"))  # nothing converted yet
    assert main(["evaluate", "--catalogue", "sample", "--limit", "30", "--backbone", "efficientnet_lite0",
                 "--no-cache"]) == 2
    assert capsys.readouterr().err == (f"error: {evil}: refusing to load global posix.system from a weights file; "
                                       "replace the file (a weights file holds tensors only)\n")
    assert not mark.exists()
