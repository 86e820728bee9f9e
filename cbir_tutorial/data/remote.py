"""A query photo fetched from a web address: http(s) only, one deadline, a size cap and a content check.

    content = image_bytes_from_url("https://example.com/shoe.jpg")   # bytes of an image, or RemoteImageError

Only :mod:`urllib` (no extra dependency). What comes back is checked before it is used: the server's
answer (status), its declared type (``text/html`` is refused, ``image/*`` and untyped bodies go on to
Pillow) and its length (the body is read in chunks and refused past ``max_bytes``). One deadline covers
connecting, the headers and the body (a server that drips header lines is cut off too); at most
:data:`MAX_REDIRECTS` redirects are followed, each checked to be http(s) before it is followed. A user
name and password in the address are sent (HTTP basic authentication, not to redirected hosts) and never
shown: messages name the address as :func:`shown_url` writes it.
"""

from __future__ import annotations

import base64
import http.client
import io
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from .images import ImageError, load_rgb

#: Seconds for the whole fetch: connecting, the headers and the body.
URL_TIMEOUT_S = 15.0
#: Largest body accepted, bytes (20 MiB: a big phone photo is 3 to 10 MiB).
URL_MAX_BYTES = 20 * 1024 * 1024
#: Redirects followed at most.
MAX_REDIRECTS = 5
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


class _Refused(Exception):
    """Raised inside the opener; the fetch reports it after the address."""


def is_url(text) -> bool:
    """True when ``text`` is written as a web address (``scheme://...``), whatever its scheme."""
    return isinstance(text, str) and _SCHEME.match(text.strip()) is not None


def shown_url(url: str) -> str:
    """``url`` as messages show it: a user name and password replaced by ``***``."""
    url = str(url).strip()
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _failure(name: str, said) -> RemoteImageError:
    """``name: said`` on one printable line (servers put line breaks and control bytes in what they say)."""
    return RemoteImageError(f"{name}: " + " ".join("".join(c if c.isprintable() else " " for c in str(said)).split()))


def _megabytes(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


class _Deadline:
    """Shuts every socket of one fetch when its time is up, whatever the socket is waiting for."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        return max(0.001, self.end - time.monotonic())

    def watch(self, sock) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock) -> None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # also under TLS: the blocked read returns
        except OSError:
            pass


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """An opener whose connections are watched by ``deadline`` and whose redirects are checked."""

    def watched(base):
        class Connection(base):
            def connect(self):
                self.timeout = deadline.remaining()
                super().connect()
                deadline.watch(self.sock)
        return Connection

    plain, secure = watched(http.client.HTTPConnection), watched(http.client.HTTPSConnection)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(plain, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(secure, req, context=self._context)

    class Redirects(urllib.request.HTTPRedirectHandler):
        max_redirections = MAX_REDIRECTS

        def http_error_302(self, req, fp, code, msg, headers):
            target = urllib.parse.urljoin(req.full_url, headers.get("location") or headers.get("uri") or "")
            if urllib.parse.urlsplit(target).scheme.lower() not in SCHEMES:
                raise _Refused(f"redirected to {shown_url(target)}, which is not an http(s) address")
            fp.close()  # never read: urllib would read a redirect's whole body, whatever length it declares
            return super().http_error_302(req, io.BytesIO(), code, msg, headers)

        http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    return urllib.request.build_opener(Handler, SecureHandler, Redirects)


def _request(url: str) -> urllib.request.Request:
    """A GET for ``url`` without its user name and password, sent instead as basic authentication."""
    parts = urllib.parse.urlsplit(url)
    request = urllib.request.Request(
        urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1])),
        headers={"User-Agent": _USER_AGENT, "Accept": "image/*"})
    if parts.username is not None:
        user = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_unredirected_header("Authorization", "Basic " + base64.b64encode(user.encode()).decode())
    return request


def image_bytes_from_url(url: str, timeout_s: float = URL_TIMEOUT_S, max_bytes: int = URL_MAX_BYTES) -> bytes:
    """The body of ``url`` when it may be an image (decode it with :func:`~cbir_tutorial.data.images.load_rgb`).

    ``timeout_s``: seconds for the whole fetch (connecting, redirects, headers and body). ``max_bytes``:
    the largest body accepted. Raises :class:`RemoteImageError` naming ``url`` (as :func:`shown_url`)
    for another scheme than http(s) (also as a redirect target), more than :data:`MAX_REDIRECTS`
    redirects, a server that cannot be reached or does not answer in time, an HTTP error status, a
    declared type other than an image (``"text/html, not an image"``), an empty body, or a body larger
    than ``max_bytes``.
    """
    url = str(url).strip()
    name = shown_url(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise RemoteImageError(f"{name}: not a web address; use an http:// or https:// address of a photo")
    answered = False
    with _Deadline(timeout_s) as deadline:
        try:
            with _opener(deadline).open(_request(url)) as response:
                answered = not deadline.expired  # headers cut short by the deadline end like whole ones
                kind = response.headers.get_content_type() if response.headers.get("Content-Type") else ""
                if kind not in UNTYPED and not kind.startswith("image/"):
                    raise _Refused(f"the server sent {kind}, not an image")
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise _Refused(f"the file is {_megabytes(int(declared))}, larger than the "
                                   f"{_megabytes(max_bytes)} limit")
                body = bytearray()
                while chunk := response.read1(_CHUNK):
                    body += chunk
                    if len(body) > max_bytes:
                        raise _Refused(f"the file is larger than the {_megabytes(max_bytes)} limit")
                if deadline.expired:  # a body cut short by the deadline can end like a whole one
                    raise TimeoutError
        except _Refused as refusal:
            raise _failure(name, refusal) from None
        except urllib.error.HTTPError as error:
            if 300 <= error.code < 400:
                raise _failure(name, f"more than {MAX_REDIRECTS} redirects; use the photo's own address") from None
            raise _failure(name, f"the server answered {error.code} {error.reason}") from None
        except (OSError, ValueError, http.client.HTTPException) as error:  # reset, cut short, malformed, bad port
            if deadline.expired or isinstance(error, (TimeoutError, socket.timeout)) or (
                    isinstance(error, urllib.error.URLError) and isinstance(error.reason, TimeoutError)):
                said = "the download took longer than" if answered else "no answer within"
                raise _failure(name, f"{said} {timeout_s:g} s") from None
            if isinstance(error, urllib.error.URLError):
                raise _failure(name, f"cannot reach the server ({error.reason})") from None
            raise _failure(name, f"download failed ({error})") from None
    if not body:
        raise RemoteImageError(f"{name}: the server sent an empty body, not an image")
    return bytes(body)


def photo_from_url(url: str, *, timeout_s: float = URL_TIMEOUT_S, max_bytes: int = URL_MAX_BYTES) -> bytes:
    """The bytes of the photo at ``url``, fetched (:func:`image_bytes_from_url`) and decoded once now, so
    that a file that is no image fails here: :class:`RemoteImageError` naming ``url`` (as :func:`shown_url`)."""
    content = image_bytes_from_url(url, timeout_s=timeout_s, max_bytes=max_bytes)
    try:
        load_rgb(content, CHECK_PX)  # decodes it all (a JPEG at reduced scale: fast for big photos)
    except ImageError as error:
        raise RemoteImageError(str(error).replace("<uploaded bytes>", shown_url(url))) from None
    return content
