"""The sample's real features for the index tests, and Milvus databases to run the Milvus tests against."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def features(sample_engine):
    return sample_engine.features


@pytest.fixture(scope="module")
def priced_table(sample_engine):
    """The sample's table with prices (the sample has none): a deterministic spread 10..990 and some unknown."""
    table = sample_engine.catalogue.table.copy()
    table["price"] = [("" if i % 11 == 0 else f"€{10 + (i * 37) % 981:,}") for i in range(len(table))]
    return table


#: A running Milvus server to test against instead of starting one (e.g. ``http://127.0.0.1:19530``).
MILVUS_URI_ENV = "CBIR_TUTORIAL_MILVUS_URI"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """The URI of a real Milvus server: ``$CBIR_TUTORIAL_MILVUS_URI``, or a standalone server started once per
    session from the ``milvus`` package (embedded Milvus 2.3, in the dev extra), its data in a temporary
    folder, on a free port; stopped at the end. Skips, saying why, where no server can start."""
    import importlib.util
    import os

    if os.environ.get(MILVUS_URI_ENV):
        yield os.environ[MILVUS_URI_ENV]
        return
    if importlib.util.find_spec("pymilvus") is None:
        pytest.skip('pymilvus is not installed (pip install ".[scale]")')
    try:
        from milvus import MilvusServer
    except ImportError:
        pytest.skip(f'no Milvus server: the package milvus (pip install ".[dev]") is not installed and '
                    f"{MILVUS_URI_ENV} is not set")
    one_server(tmp_path_factory)
    if not _port_is_free(ETCD_PEER_PORT):
        pytest.skip(f"127.0.0.1:{ETCD_PEER_PORT} is in use (the embedded etcd of another Milvus server, perhaps one "
                    f"an interrupted test run left running): stop it, or set {MILVUS_URI_ENV} to a running server")
    server = MilvusServer()
    server.set_base_dir(str(tmp_path_factory.mktemp("milvus_server")))
    server.listen_port = _free_port()
    server.config.set("etcd_port", _free_port())
    server.webservice_port = _free_port()  # its health page, polled until it says OK
    try:
        server.wait_started = lambda: started_or_exited(server, MilvusServer.wait_started, seconds=240)
        server.start()
    except Exception as error:  # the embedded binary cannot run here (platform, ports, memory)
        server.stop()
        pytest.skip(f"the embedded Milvus server did not start ({type(error).__name__}: {error})")
    uri = f"http://127.0.0.1:{server.listen_port}"
    try:
        answered = answering(uri, seconds=240)
        if answered is not True:
            pytest.skip(f"the embedded Milvus server listens on {uri} but did not answer within 240 s ({answered})")
        yield uri
    finally:
        server.stop()


#: The embedded etcd's peer port: fixed in the ``milvus`` package's standalone binary (2.3), so one server per machine.
ETCD_PEER_PORT = 2380


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def started_or_exited(server, wait_started, *, seconds: float) -> None:
    """``wait_started`` (the ``milvus`` package's, which polls the health page for as long as it is given) in
    slices of 2 s, raising at once with the server's first logged error when its process has exited (it polls a
    dead server to the end), or after ``seconds``."""
    import time
    from pathlib import Path

    deadline = time.monotonic() + seconds
    while True:
        try:
            return wait_started(server, timeout=2_000)
        except TimeoutError:
            code = server.server_proc.poll()
            if code is not None:
                log = Path(server.config.base_data_dir) / "logs" / "milvus-stdout.log"
                errors = [line for line in log.read_text(errors="replace").splitlines() if "[ERROR]" in line]
                raise RuntimeError(f"its process exited ({code}): {errors[0][:300] if errors else 'no error logged'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not started within {seconds:g} s") from None


def one_server(tmp_path_factory) -> None:
    """Fails when another xdist worker of this run has started a Milvus server already: a second one fails on the
    first's ports (its embedded etcd) and its tests would wait for it, then skip. The server's tests share the
    group ``milvus_server`` (``--dist loadgroup`` keeps a group on one worker); pytest-xdist 3.8 on pytest 9.2 no
    longer groups (pytest-dev/pytest-xdist#1386), hence pyproject.toml's pytest below 9.2."""
    import os

    from run_folders import run_folder

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    try:
        with open(run_folder(tmp_path_factory) / "milvus_server.worker", "x", encoding="utf-8") as mark:
            mark.write(worker)
    except FileExistsError:
        first = (run_folder(tmp_path_factory) / "milvus_server.worker").read_text(encoding="utf-8")
        pytest.fail(f"worker {worker} was about to start a second Milvus server ({first} started one): pytest-xdist's "
                    "--dist loadgroup did not keep the group 'milvus_server' on one worker (pytest-dev/pytest-xdist"
                    f"#1386, pytest {pytest.__version__}); install pytest below 9.2 (pyproject.toml's dev extra)",
                    pytrace=False)


def answering(uri: str, seconds: float):
    """True once the Milvus server at ``uri`` lists its collections (a listening port comes before its
    coordinators are ready, sooner or later on a busy machine), else the last error after ``seconds``."""
    import time

    from pymilvus import MilvusClient

    deadline, error = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        try:
            client = MilvusClient(uri=uri, timeout=20)
            client.list_collections()
            client.close()
            return True
        except Exception as problem:  # not ready yet: pymilvus raises its own and gRPC's errors
            error = f"{type(problem).__name__}: {problem}"
            time.sleep(2)
    return error


#: The server's tests stay on one xdist worker (``--dist loadgroup``), which starts the server once.
ON_THE_SERVER = pytest.param("server", marks=[pytest.mark.milvus_server, pytest.mark.xdist_group("milvus_server")])


@pytest.fixture(scope="module", params=["lite", ON_THE_SERVER])
def milvus_uri(request, tmp_path_factory):
    """Where the Milvus tests store their rows: a Milvus Lite file in a temporary folder, or the server."""
    import importlib.util

    if importlib.util.find_spec("pymilvus") is None or importlib.util.find_spec("milvus_lite") is None:
        pytest.skip('pymilvus / milvus-lite not installed (pip install ".[scale]")')
    if request.param == "server":
        return request.getfixturevalue("milvus_server")
    return str(tmp_path_factory.mktemp("milvus") / "test.db")
