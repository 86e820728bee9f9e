"""Query photos by web address, against a server on 127.0.0.1 (the ``photo_server`` fixture)."""

import time
import urllib.request

import pytest

from cbir_tutorial.data.images import ImageError, load_rgb
from cbir_tutorial.data.remote import MAX_REDIRECTS, RemoteImageError, image_bytes_from_url, is_url, shown_url


def test_a_photo_url_gives_the_photo_bytes(photo_server):
    base, photo = photo_server
    assert image_bytes_from_url(f"{base}/photo.jpg") == photo.read_bytes()
    assert image_bytes_from_url(f"{base}/untyped") == photo.read_bytes()  # no type: Pillow decides later
    assert image_bytes_from_url(f"  {base}/redirect ") == photo.read_bytes()
    assert load_rgb(image_bytes_from_url(f"{base}/photo.jpg")).shape == load_rgb(photo).shape


def test_a_web_page_is_refused_by_its_type_naming_the_url(photo_server):
    base, _ = photo_server
    with pytest.raises(RemoteImageError) as error:
        image_bytes_from_url(f"{base}/page.html")
    assert str(error.value) == f"{base}/page.html: the server sent text/html, not an image"
    assert isinstance(error.value, ImageError) and isinstance(error.value, ValueError)


def test_a_missing_file_names_the_status(photo_server):
    base, _ = photo_server
    with pytest.raises(RemoteImageError, match=r"/missing\.jpg: the server answered 404 Not Found$"):
        image_bytes_from_url(f"{base}/missing.jpg")


def test_a_declared_size_over_the_cap_is_refused_before_reading(photo_server):
    base, photo = photo_server
    started = time.monotonic()
    with pytest.raises(RemoteImageError, match=r"huge\.jpg: the file is 50\.0 MiB, larger than the 20\.0 MiB limit"):
        image_bytes_from_url(f"{base}/huge.jpg")
    assert time.monotonic() - started < 5
    small = photo.stat().st_size - 1
    with pytest.raises(RemoteImageError, match="larger than the"):
        image_bytes_from_url(f"{base}/photo.jpg", max_bytes=small)
    assert len(image_bytes_from_url(f"{base}/photo.jpg", max_bytes=small + 1)) == small + 1


def test_a_body_without_length_is_cut_at_the_cap(photo_server):
    base, _ = photo_server
    with pytest.raises(RemoteImageError, match=r"stream\.jpg: the file is larger than the 1\.0 MiB limit"):
        image_bytes_from_url(f"{base}/stream.jpg", max_bytes=1024 * 1024)
    assert len(image_bytes_from_url(f"{base}/stream.jpg", max_bytes=5 * 1024 * 1024)) == 4 * 1024 * 1024


def test_a_server_too_slow_to_answer_times_out(photo_server):
    base, _ = photo_server
    started = time.monotonic()
    with pytest.raises(RemoteImageError, match=r"slow\.jpg: no answer within 0\.3 s"):
        image_bytes_from_url(f"{base}/slow.jpg", timeout_s=0.3)
    assert time.monotonic() - started < 1.5


def test_a_download_too_slow_in_total_times_out(photo_server):
    """Each byte comes within the timeout, the whole file would take 4 s: stopped after about 0.5 s."""
    base, _ = photo_server
    started = time.monotonic()
    with pytest.raises(RemoteImageError, match=r"dribble\.jpg: the download took longer than 0\.5 s"):
        image_bytes_from_url(f"{base}/dribble.jpg", timeout_s=0.5)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("url, reason", [
    ("file:///etc/passwd", "not a web address"),
    ("ftp://127.0.0.1/photo.jpg", "not a web address"),
    ("http://", "not a web address"),
    ("photo.jpg", "not a web address"),
])
def test_only_http_and_https_addresses_are_fetched(url, reason):
    with pytest.raises(RemoteImageError, match=reason) as error:
        image_bytes_from_url(url)
    assert str(error.value).startswith(url)


def test_a_closed_port_cannot_be_reached(photo_server):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RemoteImageError, match=rf"127\.0\.0\.1:{port}/a\.jpg: cannot reach the server"):
        image_bytes_from_url(f"http://127.0.0.1:{port}/a.jpg", timeout_s=2)


def test_is_url_tells_addresses_from_paths():
    assert is_url("https://example.com/a.jpg") and is_url("ftp://host/a.jpg") and is_url(" http://x/y ")
    assert not is_url("images/a.jpg") and not is_url("C:\\photos\\a.jpg") and not is_url(None)
    assert not is_url("photos/a://b.jpg") and not is_url("")


def test_a_server_dripping_header_lines_is_cut_at_the_deadline(photo_server):
    """One header line every 0.1 s for 5 s: each line comes in time, the headers never end in time."""
    base, _ = photo_server
    started = time.monotonic()
    with pytest.raises(RemoteImageError) as error:
        image_bytes_from_url(f"{base}/drip-headers.jpg", timeout_s=0.5)
    assert str(error.value) == f"{base}/drip-headers.jpg: no answer within 0.5 s"
    assert time.monotonic() - started < 1.5


def test_a_few_redirects_are_followed_and_no_more(photo_server):
    base, photo = photo_server
    assert image_bytes_from_url(f"{base}/chain/{MAX_REDIRECTS - 1}") == photo.read_bytes()  # MAX_REDIRECTS hops
    for path in (f"/chain/{MAX_REDIRECTS}", "/loop"):
        with pytest.raises(RemoteImageError) as error:
            image_bytes_from_url(f"{base}{path}")
        assert str(error.value) == f"{base}{path}: more than {MAX_REDIRECTS} redirects; use the photo's own address"


def test_a_redirect_to_another_scheme_is_refused_before_it_is_followed(photo_server, monkeypatch):
    base, _ = photo_server
    followed = []
    monkeypatch.setattr(urllib.request.FTPHandler, "ftp_open", lambda self, req: followed.append(req))
    with pytest.raises(RemoteImageError) as error:
        image_bytes_from_url(f"{base}/to-ftp")
    assert str(error.value) == f"{base}/to-ftp: redirected to ftp://127.0.0.1/photo.jpg, which is not an http(s) address"
    assert followed == []


def test_a_password_in_the_address_is_sent_and_never_shown(photo_server):
    base, photo = photo_server
    host = base.removeprefix("http://")
    assert image_bytes_from_url(f"http://ann:s3cret@{host}/private.jpg") == photo.read_bytes()
    for url in (f"http://ann:wrong@{host}/private.jpg", f"http://ann:s3cret@{host}/page.html",
                f"http://ann:s3cret@{host}:notaport/x.jpg", f"ftp://ann:s3cret@{host}/x.jpg"):
        with pytest.raises(RemoteImageError) as error:
            image_bytes_from_url(url, timeout_s=2)
        assert "s3cret" not in str(error.value) and "wrong" not in str(error.value)
        assert str(error.value).startswith(shown_url(url) + ": ") and "://***@" in shown_url(url)
    assert shown_url(f"http://{host}/a.jpg") == f"http://{host}/a.jpg"
