"""Shared fixtures: the real sample catalogue (../shared/data/fashion-sample), a private cache, a tiny trained model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cbir_tutorial.data.loaders import CHECKOUT_SAMPLE as SAMPLE
from run_folders import run_folder
from threads import ONE_THREAD_EACH

# pymilvus sets up logging when first imported, closing the stream of TensorFlow's (absl's) log handler
# unless that is sys.stderr; under pytest it is a finished test's capture. So it is imported first.
try:
    import pymilvus  # noqa: F401
except ImportError:
    pass  # without pymilvus the Milvus tests skip themselves

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CBIR_TUTORIAL_DATA", str(SAMPLE))
# Under pytest-xdist (-n: one worker per core, and one more), one thread per numeric library in each worker and in
# what it starts (the command line, benchmark scripts, kernels): each worker's TensorFlow would size its thread pools
# for the whole machine, and the workers' threads would contend for the same cores. Set before TensorFlow starts.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for name, value in ONE_THREAD_EACH.items():
        os.environ.setdefault(name, value)


def pytest_addoption(parser):
    group = parser.getgroup("cbir-tutorial notebook runs (tests/test_notebooks_run.py)")
    group.addoption("--first-cell-installs", action="store_true",
                    help="put the wheel beside each notebook and let its first cell install it, as on Colab")
    group.addoption("--pinned", action="append", default=[], metavar="NAME==VERSION",
                    help="a package the notebooks must leave at this version (repeat for each)")
    parser.addoption("--site", metavar="DIR", help="a built course site (docs/build) for tests/test_site.py to open "
                     "in Chromium")
    group.addoption("--executed-notebooks", metavar="DIR",
                    help="also write each executed notebook into DIR/<dataset>/ (docs/build --executed renders them)")
    group.addoption("--notebook-data", action="append", choices=["sample", "farfetch"], default=[],
                    help="the dataset(s) the notebooks run on (default: farfetch, the Farfetch layout; the colab nox "
                         "session runs them on the sample)")


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (the README's test command): one worker per core, and one more on a machine of up to 4 cores,
    where the tests' waits (notebook kernels, the Milvus server, the command line in fresh processes, Chromium)
    leave a core idle often enough for one more worker to use it (CI's 2 cores, whole suite: 627 s with 3
    workers against 664 s with 2, one run each); a larger machine has the cores, and its memory per worker
    stays what it was."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores + 1 if cores <= 4 else cores


#: Markers of the longest tests, which run first so that pytest-xdist's workers end together (a minute-long
#: notebook started last would leave the other workers idle while it runs). The Milvus server's tests keep
#: their place: started beside the notebooks, the embedded server once stopped answering mid-run.
LONGEST_FIRST = ("notebooks", "smoke")


#: The notebooks whose runs take longest at the test-run settings, longest first (the tests' --durations, 2026-12-07:
#: 08 and 10 about three times 02 or 07): started first, they do not run alone at the end.
LONGEST_NOTEBOOKS = ("08_", "10_", "06_", "03_", "04_")


def pytest_collection_modifyitems(items):
    def rank(item) -> tuple[int, int]:
        kind = next((i for i, name in enumerate(LONGEST_FIRST) if item.get_closest_marker(name)), len(LONGEST_FIRST))
        notebook = item.callspec.params.get("notebook", "") if hasattr(item, "callspec") else ""
        return kind, next((i for i, start in enumerate(LONGEST_NOTEBOOKS) if notebook.startswith(start)),
                          len(LONGEST_NOTEBOOKS))

    items.sort(key=rank)  # stable: the order within each kind stays as collected


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test run writes features and converted weights to its own cache folder, shared by its xdist
    workers (the feature cache is safe for several processes: each writes shards of its own)."""
    folder = run_folder(tmp_path_factory) / "cbir_cache"
    folder.mkdir(exist_ok=True)
    os.environ["CBIR_TUTORIAL_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE / "styles.csv").is_file():
        pytest.fail(f"The sample catalogue is missing: expected {SAMPLE}/styles.csv (see data/README.md)")
    return SAMPLE


@pytest.fixture(scope="session")
def sample_catalogue(sample_dir):
    from cbir_tutorial.data.loaders import load_fashion_products

    return load_fashion_products(sample_dir)


@pytest.fixture(scope="session")
def lite_extractor():
    from cbir_tutorial import FeatureExtractor

    return FeatureExtractor("efficientnet_lite0")


@pytest.fixture(scope="session")
def sample_engine(sample_catalogue, lite_extractor, isolated_cache):
    """The sample indexed with EfficientNet-Lite0; the first xdist worker to ask extracts the features, the
    others wait for it and read them from the shared cache."""
    from filelock import FileLock

    from cbir_tutorial import SearchEngine

    with FileLock(str(isolated_cache / "sample_engine.lock")):
        return SearchEngine.build(sample_catalogue, lite_extractor, progress=False)


@pytest.fixture
def offline_keras(monkeypatch):
    """Keras backbones whose ImageNet download fails, as on a machine without internet."""
    from cbir_tutorial.models import backbones

    application = backbones.keras_application

    def offline(spec, weights, **options):
        if weights == "imagenet" and spec.weights_file is not None:  # a Keras download, not the pip-shipped weights
            raise backbones.WeightsUnavailableError(f"ImageNet weights for {spec.title} could not be downloaded")
        return application(spec, weights, **options)

    monkeypatch.setattr(backbones, "keras_application", offline)


@pytest.fixture(scope="session")
def lite_weights_file(tmp_path_factory) -> Path:
    """A real ``.weights.h5`` file of EfficientNet-Lite0's feature model (random init, seed 1)."""
    from cbir_tutorial.models.backbones import feature_model

    path = tmp_path_factory.mktemp("weights") / "lite0_seed1.weights.h5"
    feature_model("efficientnet_lite0", None, seed=1).save_weights(path)
    return path


@pytest.fixture(scope="session")
def photo_server(sample_dir):
    """A web server on 127.0.0.1 (a free port, in a thread) for queries by URL: ``(base_url, photo path)``.

    ``/photo.jpg`` a real sample photo (image/jpeg), ``/untyped`` the same bytes without a type,
    ``/redirect`` → ``/photo.jpg``, ``/page.html`` an HTML page, ``/fake.jpg`` HTML sent as image/jpeg,
    ``/huge.jpg`` declares 50 MiB, ``/stream.jpg`` 4 MiB with no length, ``/slow.jpg`` answers after
    2 s, ``/dribble.jpg`` one byte every 0.1 s (4 s), ``/drip-headers.jpg`` one header line every 0.1 s
    (5 s), ``/chain/N`` N redirects then the photo, ``/loop`` a redirect to itself, ``/to-ftp`` a redirect to
    ``ftp://``, ``/private.jpg`` the photo for user ``ann`` with password ``s3cret`` (else 401),
    ``/shoe.eps`` an EPS drawing as image/x-eps, anything else 404. Every answer ends by itself.
    """
    import base64
    import http.server
    import threading
    import time

    photo = sorted((sample_dir / "images").glob("*.jpg"))[7]
    content = photo.read_bytes()
    page = b"<!doctype html><html><body><h1>A shop page</h1><img src='photo.jpg'></body></html>"
    password = "Basic " + base64.b64encode(b"ann:s3cret").decode()
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\nshowpage\n%%EOF\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, body: bytes, kind: str | None, length: int | None = None):
            self.send_response(200)
            if kind:
                self.send_header("Content-Type", kind)
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body)

        def redirect(self, location: str):
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            try:
                if self.path.startswith("/chain/"):
                    left = int(self.path.rsplit("/", 1)[1])
                    self.redirect(f"/chain/{left - 1}" if left > 0 else "/photo.jpg")
                elif self.path == "/loop":
                    self.redirect("/loop")
                elif self.path == "/to-ftp":
                    self.redirect("ftp://127.0.0.1/photo.jpg")
                elif self.path == "/private.jpg":
                    if self.headers.get("Authorization") == password:
                        self.answer(content, "image/jpeg", len(content))
                    else:
                        self.send_error(401, "Unauthorized")
                elif self.path == "/shoe.eps":
                    self.answer(eps, "image/x-eps", len(eps))
                elif self.path == "/drip-headers.jpg":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    for i in range(50):
                        self.wfile.write(f"X-Drip-{i}: {i}\r\n".encode())
                        self.wfile.flush()
                        time.sleep(0.1)
                    self.wfile.write(b"\r\n")
                elif self.path == "/photo.jpg":
                    self.answer(content, "image/jpeg", len(content))
                elif self.path == "/untyped":
                    self.answer(content, None, len(content))
                elif self.path == "/redirect":
                    self.redirect("/photo.jpg")
                elif self.path == "/page.html":
                    self.answer(page, "text/html; charset=utf-8", len(page))
                elif self.path == "/fake.jpg":
                    self.answer(page, "image/jpeg", len(page))
                elif self.path == "/huge.jpg":
                    self.answer(content, "image/jpeg", 50 * 1024 * 1024)  # the client must refuse, not read
                elif self.path == "/stream.jpg":
                    self.answer(b"", "image/jpeg")
                    for _ in range(4):
                        self.wfile.write(bytes(1024 * 1024))
                elif self.path == "/slow.jpg":
                    time.sleep(2)
                    self.answer(content, "image/jpeg", len(content))
                elif self.path == "/dribble.jpg":
                    self.answer(b"", "image/jpeg", len(content))
                    for byte in content[:40]:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.1)
                else:
                    self.send_error(404, "Not Found")
            except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
                pass

    existing = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    os.environ["no_proxy"] = ",".join(filter(None, ["127.0.0.1", existing]))  # never through a proxy
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", photo
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def tiny_catalogue(sample_catalogue):
    """8 real photos of each of 3 categories (:mod:`tiny_training`)."""
    from tiny_training import tiny_catalogue_of

    return tiny_catalogue_of(sample_catalogue)


@pytest.fixture(scope="session")
def trained_run(tiny_catalogue, tmp_path_factory):
    """``(folder, TrainingResult)`` of one tiny fine-tuning run (multi-similarity loss, 2 epochs, 16-d
    embedding; :func:`tiny_training.tiny`), trained once per run (:func:`run_folders.made_once`), every worker
    reading the same folder. Tests that change or move the folder work on a copy."""
    from run_folders import made_once
    from tiny_training import tiny

    from cbir_tutorial.training.trainer import train

    def trained(folder):
        out = folder / "lite0-tiny"
        return out, train(tiny_catalogue, out, tiny(loss="multi-similarity"), progress=False)

    return made_once(tmp_path_factory, "trained-run", trained)


@pytest.fixture(scope="session")
def trained_folder(trained_run) -> Path:
    """The trained-model folder of :func:`trained_run`."""
    return trained_run[0]
