"""A query photo fetched from a web address: http(s) only, with a timeout, a size cap and a content check.

    content = image_bytes_from_url("https://example.com/shoe.jpg")   # bytes of an image, or RemoteImageError

Only :mod:`urllib` (no extra dependency). What comes back is checked before it is used: the server's
answer (status), its declared type (``text/html`` is refused, ``image/*`` and untyped bodies go on to
Pillow) and its length (the body is read in chunks and refused past ``max_bytes``).
"""

from __future__ import annotations

import http.client
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

from .images import ImageError, load_rgb

#: Seconds to wait for the server, and for the whole download.
URL_TIMEOUT_S = 15.0
#: Largest body accepted, bytes (20 MiB: a big phone photo is 3 to 10 MiB).
URL_MAX_BYTES = 20 * 1024 * 1024
SCHEMES = ("http", "https")
#: Declared types that may still hold an image (servers that do not say what they send).
UNTYPED = ("", "application/octet-stream", "binary/octet-stream")
_CHUNK = 64 * 1024
#: Side, pixels, at which a fetched photo is decoded to check it.
CHECK_PX = 120
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_USER_AGENT = "cbir-tutorial (python urllib; query photo)"


class RemoteImageError(ImageError):
    """A web address that gave no usable image; the message names the address and what came back."""


def is_url(text) -> bool:
    """True when ``text`` is written as a web address (``scheme://...``), whatever its scheme."""
    return isinstance(text, str) and _SCHEME.match(text.strip()) is not None


def _megabytes(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def image_bytes_from_url(url: str, timeout_s: float = URL_TIMEOUT_S, max_bytes: int = URL_MAX_BYTES) -> bytes:
    """The body of ``url`` when it may be an image (decode it with :func:`~cbir_tutorial.data.images.load_rgb`).

    ``timeout_s``: seconds without an answer before giving up, also the limit for the whole download
    (checked after each chunk). ``max_bytes``: the largest body accepted. Raises
    :class:`RemoteImageError` naming ``url`` for another scheme than http(s), a server that cannot be
    reached or does not answer in time, an HTTP error status, a declared type other than an image
    (``"text/html, not an image"``), an empty body, or a body larger than ``max_bytes``.
    """
    url = str(url).strip()
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in SCHEMES or not urllib.parse.urlsplit(url).netloc:
        raise RemoteImageError(f"{url}: not a web address; use an http:// or https:// address of a photo")
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept": "image/*"})
    deadline = time.monotonic() + timeout_s
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            final = response.geturl()
            if urllib.parse.urlsplit(final).scheme.lower() not in SCHEMES:
                raise RemoteImageError(f"{url}: redirected to {final}, which is not an http(s) address")
            kind = response.headers.get_content_type() if response.headers.get("Content-Type") else ""
            if kind not in UNTYPED and not kind.startswith("image/"):
                raise RemoteImageError(f"{url}: the server sent {kind}, not an image")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise RemoteImageError(f"{url}: the file is {_megabytes(int(declared))}, larger than the "
                                       f"{_megabytes(max_bytes)} limit")
            body = bytearray()
            while chunk := response.read1(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise RemoteImageError(f"{url}: the file is larger than the {_megabytes(max_bytes)} limit")
                if time.monotonic() > deadline:
                    raise RemoteImageError(f"{url}: the download took longer than {timeout_s:g} s")
    except RemoteImageError:
        raise
    except urllib.error.HTTPError as error:
        raise RemoteImageError(f"{url}: the server answered {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, (TimeoutError, socket.timeout)):
            raise RemoteImageError(f"{url}: no answer within {timeout_s:g} s") from None
        raise RemoteImageError(f"{url}: cannot reach the server ({error.reason})") from None
    except (TimeoutError, socket.timeout):
        raise RemoteImageError(f"{url}: no answer within {timeout_s:g} s") from None
    except (OSError, ValueError, http.client.HTTPException) as error:  # reset, cut short, malformed, bad port
        raise RemoteImageError(f"{url}: download failed ({error})") from None
    if not body:
        raise RemoteImageError(f"{url}: the server sent an empty body, not an image")
    return bytes(body)


def photo_from_url(url: str, *, timeout_s: float = URL_TIMEOUT_S, max_bytes: int = URL_MAX_BYTES) -> bytes:
    """The bytes of the photo at ``url``, fetched (:func:`image_bytes_from_url`) and decoded once now, so
    that a file that is no image fails here: :class:`RemoteImageError` naming ``url``."""
    content = image_bytes_from_url(url, timeout_s=timeout_s, max_bytes=max_bytes)
    try:
        load_rgb(content, CHECK_PX)  # decodes it all (a JPEG at reduced scale: fast for big photos)
    except ImageError as error:
        raise RemoteImageError(str(error).replace("<uploaded bytes>", str(url).strip())) from None
    return content
