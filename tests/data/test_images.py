import io
import os

import numpy as np
import pytest
from PIL import Image

from cbir_tutorial.data.images import ImageError, decoded_images, load_rgb


@pytest.fixture
def photo(sample_dir):
    return sample_dir / "images" / sorted(p.name for p in (sample_dir / "images").iterdir())[0]


def test_real_photo_decodes_and_resizes(photo):
    original = load_rgb(photo)
    assert original.dtype == np.uint8 and original.shape == (80, 60, 3)
    squashed = load_rgb(photo, 224, "squash")
    assert squashed.shape == (224, 224, 3)


def test_pad_keeps_aspect_ratio_on_white(photo):
    padded = load_rgb(photo, 224, "pad")
    assert padded.shape == (224, 224, 3)
    # a 60x80 portrait photo fills the height: 168 px wide, 28 px of white each side
    assert (padded[:, :27] == 255).all() and (padded[:, -27:] == 255).all()
    assert not (padded[:, 100:120] == 255).all()


def save(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


def test_grayscale_and_cmyk_become_rgb(tmp_path):
    gray = load_rgb(save(Image.new("L", (10, 10), 100), tmp_path / "g.jpg"))
    assert gray.shape == (10, 10, 3) and np.allclose(gray, 100, atol=2)
    cmyk = load_rgb(save(Image.new("CMYK", (10, 10), (0, 255, 255, 0)), tmp_path / "c.jpg"))
    assert cmyk.shape == (10, 10, 3)
    assert cmyk[..., 0].mean() > 200 and cmyk[..., 1].mean() < 60  # pure red stays red


def test_transparency_becomes_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    pixels = load_rgb(save(rgba, tmp_path / "t.png"))
    assert tuple(pixels[4, 4]) == (255, 255, 255)
    assert tuple(pixels[0, 0]) == (255, 0, 0)
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    palette.putpixel((0, 0), 0)
    pixels = load_rgb(save(palette, tmp_path / "p.png", transparency=1))
    assert tuple(pixels[4, 4]) == (255, 255, 255) and tuple(pixels[0, 0]) == (0, 0, 255)


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path):
    deep = Image.fromarray(np.array([[0, 40000, 65535]], dtype=np.uint16))
    assert load_rgb(save(deep, tmp_path / "d.png"))[0, :, 0].tolist() == [0, 156, 255]


def test_bytes_and_pil_images_are_accepted(photo):
    from_bytes = load_rgb(photo.read_bytes(), 64)
    from_pil = load_rgb(Image.open(photo), 64)
    assert np.array_equal(from_bytes, load_rgb(photo, 64)) and from_pil.shape == (64, 64, 3)


@pytest.mark.parametrize("name, content, reason", [
    ("empty.jpg", b"", "empty file"),
    ("notes.jpg", b"this is not an image\n" * 20, "not an image"),
])
def test_unusable_files_raise_with_their_name(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as error:
        load_rgb(path, 32)
    assert str(path) in str(error.value)


def test_truncated_missing_and_huge_files_raise(tmp_path, photo):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo.read_bytes()[:600])
    with pytest.raises(ImageError, match="truncated"):
        load_rgb(truncated, 32)
    with pytest.raises(ImageError, match="file not found"):
        load_rgb(tmp_path / "missing.jpg")
    bomb = save(Image.new("1", (8000, 8000)), tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ImageError, match="too large"):
        load_rgb(bomb, 32)
    with pytest.raises(ValueError, match="resize='crop'"):
        load_rgb(photo, 32, "crop")


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
       b"newpath 0 0 moveto 8 0 lineto 8 8 lineto closepath fill\nshowpage\n%%EOF\n")


def ztxt_bomb() -> bytes:
    """A 4x4 PNG with a zTXt comment that inflates to 50 MB (past Pillow's text-chunk limit)."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    png = buffer.getvalue()
    data = b"Comment\x00\x00" + zlib.compress(b"a" * 50_000_000, 9)
    chunk = struct.pack(">I", len(data)) + b"zTXt" + data + struct.pack(">I", zlib.crc32(b"zTXt" + data))
    return png[:33] + chunk + png[33:]  # after the 8-byte signature and the 25-byte IHDR chunk


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_the_formats_of_product_photos_are_decoded(tmp_path, kind):
    path = save(Image.new("RGB", (8, 8), (200, 10, 10)), tmp_path / "photo.img", format=kind)
    pixels = load_rgb(path)
    assert pixels.shape == (8, 8, 3) and abs(int(pixels[..., 0].mean()) - 200) < 8


@pytest.mark.parametrize("kind", ["PCX", "SGI", "PPM", "ICO", "DDS", "QOI"])
def test_other_formats_are_refused_with_their_format_named(tmp_path, kind):
    path = save(Image.new("RGB", (8, 8), (200, 10, 10)), tmp_path / "photo.jpg", format=kind)
    with pytest.raises(ImageError) as refused:
        load_rgb(path, 32)
    assert str(refused.value) == (f"{path}: {kind} format, not one of the accepted image formats (JPEG, PNG, WEBP, "
                                  "GIF, BMP, TIFF); convert it to JPEG or PNG")


def test_an_eps_file_never_reaches_ghostscript(tmp_path, monkeypatch):
    """A ``gs`` on the PATH that leaves a mark when run: an EPS is refused before anything runs it."""
    bin_dir, mark = tmp_path / "bin", tmp_path / "gs-ran"
    bin_dir.mkdir()
    (bin_dir / "gs").write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    (bin_dir / "gs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    path = tmp_path / "shoe.jpg"
    path.write_bytes(EPS)
    for source, name in ((path, str(path)), (EPS, "<uploaded bytes>"), (io.BytesIO(EPS), "<file object>")):
        with pytest.raises(ImageError) as refused:
            load_rgb(source, 32)
        assert str(refused.value) == (f"{name}: EPS format, not one of the accepted image formats (JPEG, PNG, WEBP, "
                                      "GIF, BMP, TIFF); convert it to JPEG or PNG")
    assert not mark.exists()


def test_a_png_text_bomb_is_an_image_error_naming_the_file(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(ztxt_bomb())
    with pytest.raises(ImageError) as refused:
        load_rgb(path, 32)
    assert str(refused.value) == (f"{path}: corrupt or unsafe image (Decompressed data too large for "
                                  "PngImagePlugin.MAX_TEXT_CHUNK)")


def test_unreadable_photos_are_left_out_with_their_reason(sample_catalogue, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    pixels, kept, reasons = decoded_images([sample_catalogue.paths[0], str(broken), sample_catalogue.paths[1]], 24,
                                           "squash")
    assert pixels.shape == (2, 24, 24, 3) and pixels.dtype == np.uint8
    assert kept.tolist() == [True, False, True] and len(reasons) == 1 and "broken.jpg" in reasons[0]
