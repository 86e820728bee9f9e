"""A Milvus engine saved by one process reopens in another (Milvus Lite, and a server that released its
collection), and a Milvus Lite path that cannot be opened says why: its missing folder, a folder or a file
that is no database, no permission (a lock held by another process: test_milvus_index.py)."""

from __future__ import annotations

import errno
import inspect
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pymilvus", reason='pymilvus is not installed (pip install ".[scale]")')
pytest.importorskip("milvus_lite", reason='milvus-lite is not installed (pip install ".[scale]")')


def engine_answers(engine) -> pd.DataFrame:
    """What an engine answers for two catalogue rows and the photo of a third (5 products each)."""
    queries = {"row 3": 3, "row 17": 17, "photo of row 5": engine.catalogue.paths[5]}
    return pd.concat([engine.search(query, 5).assign(query=name) for name, query in queries.items()],
                     ignore_index=True)


#: Writes ``engine_answers(engine)`` as JSON to the script's last argument.
ANSWER = f"""
import pandas as pd
{inspect.getsource(engine_answers)}
engine_answers(engine).to_json(sys.argv[-1], orient="split", index=False)
"""

#: Builds an engine over every 20th sample product (39) in a Milvus Lite file and saves it. Arguments: sample
#: folder, Milvus Lite file, engine folder, answers file.
BUILD = """
import sys
import numpy as np
from cbir_tutorial import SearchEngine
from cbir_tutorial.data.loaders import load_fashion_products

catalogue = load_fashion_products(sys.argv[1]).subset(np.arange(0, 770, 20))
engine = SearchEngine.build(catalogue, index="milvus", index_options={"uri": sys.argv[2]}, progress=False)
engine.save(sys.argv[3])
""" + ANSWER

#: Reopens a saved engine. Arguments: Milvus URI, engine folder, answers file.
LOAD = """
import sys
from cbir_tutorial import SearchEngine

engine = SearchEngine.load(sys.argv[2], index_uri=sys.argv[1])
""" + ANSWER


def in_a_new_process(script: str, *args) -> None:
    """Run ``script`` in a fresh Python (this environment, this run's feature cache); fail with its error."""
    run = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                         timeout=600)
    if run.returncode != 0:
        pytest.fail(f"the new process failed (exit {run.returncode}):\n{run.stderr[-3000:]}")


def read_answers(path) -> pd.DataFrame:
    return pd.read_json(path, orient="split", dtype=False)


@pytest.mark.slow
def test_a_milvus_lite_engine_saved_by_one_process_searches_in_another(sample_dir, tmp_path):
    """Milvus Lite opens a file in one process at a time, so both are new processes: the builder must end."""
    database = tmp_path / "catalogue.db"
    in_a_new_process(BUILD, sample_dir, database, tmp_path / "engine", tmp_path / "built.json")
    in_a_new_process(LOAD, database, tmp_path / "engine", tmp_path / "reopened.json")
    built = read_answers(tmp_path / "built.json")
    assert len(built) == 15 and built["row"].between(0, 38).all()
    pd.testing.assert_frame_equal(read_answers(tmp_path / "reopened.json"), built, check_exact=False, atol=1e-5)


@pytest.mark.milvus_server
@pytest.mark.xdist_group("milvus_server")
def test_a_server_engine_reopens_in_another_process_after_its_collection_was_released(
        sample_catalogue, lite_extractor, milvus_server, tmp_path):
    """A server keeps a collection loaded for the process that built it (here, this one) until someone
    releases it (to free the server's memory) or the server restarts; a new process loads it again."""
    from cbir_tutorial import SearchEngine

    collection = f"reopen_{os.getpid()}"
    engine = SearchEngine.build(sample_catalogue.subset(np.arange(0, 770, 20)), lite_extractor, index="milvus",
                                index_options={"uri": milvus_server, "collection": collection}, progress=False)
    try:
        engine.save(tmp_path / "engine")
        engine_answers(engine).to_json(tmp_path / "built.json", orient="split", index=False)
        engine.index.client.release_collection(collection)
        in_a_new_process(LOAD, milvus_server, tmp_path / "engine", tmp_path / "reopened.json")
    finally:
        engine.index.client.drop_collection(collection)
        engine.index.close()
    built = read_answers(tmp_path / "built.json")
    assert len(built) == 15
    pd.testing.assert_frame_equal(read_answers(tmp_path / "reopened.json"), built, check_exact=False, atol=1e-5)


def refusal(uri) -> str:
    """The message of the RuntimeError that opening a Milvus index at ``uri`` raises."""
    from cbir_tutorial.search.milvus_index import MilvusIndex

    with pytest.raises(RuntimeError) as refused:
        MilvusIndex(8, uri=str(uri))
    message = str(refused.value)
    assert "another process" not in message
    return message


def test_a_missing_folder_is_named_with_the_fix(tmp_path):
    path = tmp_path / "not-yet" / "cbir.db"
    assert refusal(path) == (f"Milvus Lite file {path} cannot be opened: its folder {path.parent} does not exist: "
                             f"create it (mkdir -p {path.parent}) or choose another path (--index-uri)")
    assert not path.parent.exists()
    (tmp_path / "a-file").write_text("not a folder\n")
    path = tmp_path / "a-file" / "cbir.db"
    assert refusal(path) == (f"Milvus Lite file {path} cannot be opened: {path.parent} is a file, not a folder: "
                             "choose another path (--index-uri)")


def test_a_path_without_db_says_what_to_name_it(tmp_path):
    assert refusal(tmp_path) == (f"Milvus Lite file {tmp_path} cannot be opened: it is a folder; a Milvus Lite "
                                 f"database is a path ending in .db, such as {tmp_path / 'cbir.db'} (--index-uri)")
    path = tmp_path / "catalogue"
    assert refusal(path) == (f"Milvus Lite file {path} cannot be opened: a Milvus Lite database is a path ending "
                             f"in .db, such as {tmp_path / 'catalogue.db'} (--index-uri)")


def test_a_folder_of_other_files_is_left_alone(tmp_path):
    folder = tmp_path / "photos.db"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8\xff")
    assert refusal(folder) == (f"Milvus Lite file {folder} cannot be opened: it is a folder of other files, not a "
                               "Milvus Lite database: choose another path (--index-uri)")
    assert [p.name for p in folder.iterdir()] == ["holiday.jpg"]


def test_a_file_that_is_no_database_is_named(tmp_path):
    from importlib.metadata import version

    path = tmp_path / "notes.db"
    path.write_text("not a database\n")
    assert refusal(path) == (f"Milvus Lite file {path} cannot be opened: it is not a Milvus Lite database ({path} "
                             f"is a file where milvus-lite {version('milvus-lite')} keeps a folder; a database of "
                             "milvus-lite 2 is such a file, which it cannot read): choose another path (--index-uri)")
    assert path.read_text() == "not a database\n"


@contextmanager
def unwritable(folder):
    """``folder`` where this process may not create anything; yields the errno opening then meets. Root
    ignores file modes, so for root the folder is made immutable (``chattr +i``, which refuses root too)."""
    if sys.platform == "win32":
        pytest.skip("a read-only folder mode does not stop writes on Windows")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield errno.EACCES
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("running as root, and chattr +i (the one refusal root meets) is not available here")
    try:
        yield errno.EPERM
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_no_permission_names_what_could_not_be_written(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    path = folder / "cbir.db"
    with unwritable(folder) as code:
        message = refusal(path)
    assert message == (f"Milvus Lite file {path} cannot be opened: no permission to write {path} "
                       f"({os.strerror(code)}): choose a folder you may write to (--index-uri) or change its "
                       "permissions")
