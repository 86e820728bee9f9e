"""``--query`` of ``search`` and ``demo``: an image file or the web address of a photo, checked before any
indexing; a bad one is one error line that names it (without its password)."""

import pytest

from cbir_tutorial.cli import main


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
