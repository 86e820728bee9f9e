"""A Milvus index saved by one process reopens in another (Milvus Lite, and a server that released its
collection) after adds, replacements and removals, and not once another client changed its collection; a
Milvus Lite path that cannot be opened says why: its missing folder, a folder or a file that is no database,
no permission (a lock held by another process: test_milvus_index.py)."""

from __future__ import annotations

import errno
import inspect
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason='pymilvus is not installed (pip install ".[scale]")')
pytest.importorskip("milvus_lite", reason='milvus-lite is not installed (pip install ".[scale]")')


def changes():
    """The history of a changed index: ``(vectors, ids, table)`` of 40 random vectors under the ids
    ``500 + 7 i`` and their products (the index is built on the first 30 and given the last 10), the
    positions ``replaced`` given the vectors ``new``, the positions ``removed``; and 6 ``queries``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(40, 24)).astype(np.float32)
    ids = 500 + 7 * np.arange(40, dtype=np.int64)
    table = pd.DataFrame({"category": rng.choice(["Watches", "Shoes"], 40), "gender": "Men", "price": "€5"})
    replaced, new, removed = [1, 12, 35], rng.normal(size=(3, 24)).astype(np.float32), [0, 20, 39]
    return vectors, ids, table, replaced, new, removed, rng.normal(size=(6, 24)).astype(np.float32)


def changed_index(**options):
    """A Milvus index (in Milvus ``options``) built, given vectors, some replaced and some removed (:func:`changes`)."""
    from cbir_tutorial.search.backends import make_index

    vectors, ids, table, replaced, new, removed, _ = changes()
    index = make_index("milvus", vectors[:30], ids=ids[:30], metadata=table[:30], **options)
    index.add(vectors[30:], ids[30:], table[30:])
    index.add(new, ids[replaced], table.iloc[replaced])
    index.remove(ids[removed])
    return index


def changed_sample():
    """``(vectors, ids, table, queries)``: what :func:`changed_index` holds in the end (37 vectors), and the queries."""
    vectors, ids, table, replaced, new, removed, queries = changes()
    vectors = vectors.copy()
    vectors[replaced] = new
    kept = ~np.isin(ids, ids[removed])
    return vectors[kept], ids[kept], table[kept], queries


def answers(index, queries) -> dict:
    """What ``index`` answers for ``queries``: ids and distances, without a filter and with one."""
    from cbir_tutorial.search.filters import Filters

    distances, ids = index.search(queries, 5)
    shoes = index.search(queries, 5, filters=Filters(category="Shoes"))
    return {"ids": ids.tolist(), "distances": distances.tolist(), "shoes": shoes[1].tolist()}


#: Writes ``answers(index, queries)`` as JSON to the script's last argument.
ANSWER = f"""
import json
{inspect.getsource(answers)}
queries = changes()[-1]
with open(sys.argv[-1], "w") as file:
    json.dump(answers(index, queries), file)
"""

#: Builds and changes an index in a Milvus Lite file and saves it. Arguments: Milvus Lite file, index folder,
#: answers file.
BUILD = f"""
import sys
{inspect.getsource(changes)}
{inspect.getsource(changed_index)}
index = changed_index(uri=sys.argv[1])
index.save(sys.argv[2])
""" + ANSWER

#: Reopens a saved index. Arguments: Milvus URI, index folder, answers file.
LOAD = f"""
import sys
from cbir_tutorial.search.backends import load_index
{inspect.getsource(changes)}
index = load_index(sys.argv[2], uri=sys.argv[1])
""" + ANSWER

#: Another client deletes one row of the collection. Arguments: Milvus URI, collection, id.
DELETE = """
import sys
from pymilvus import MilvusClient

client = MilvusClient(sys.argv[1])
client.delete(sys.argv[2], ids=[int(sys.argv[3])])
client.flush(sys.argv[2])
client.close()
"""


def in_a_new_process(script: str, *args, fails: bool = False) -> str:
    """Run ``script`` in a fresh Python (this environment); fail with its error, or, with ``fails``, return
    the error it ended with."""
    run = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                         timeout=600)
    if (run.returncode != 0) != fails:
        pytest.fail(f"the new process {'did not fail' if fails else 'failed'} (exit {run.returncode}):\n"
                    f"{run.stderr[-3000:]}")
    return run.stderr.strip().splitlines()[-1] if fails else ""


def numpy_answers(vectors, ids, table, queries) -> dict:
    """:func:`answers` computed here with numpy."""
    def top(keep):
        d2 = ((queries[:, None, :].astype(np.float64) - vectors[None].astype(np.float64)) ** 2).sum(axis=2)
        d2[:, ~keep] = np.inf
        order = np.argsort(d2, axis=1, kind="stable")[:, :5]
        return np.sqrt(np.take_along_axis(d2, order, axis=1)), ids[order]

    (distances, found), shoes = top(np.ones(len(ids), dtype=bool)), top(table["category"].to_numpy() == "Shoes")
    return {"ids": found.tolist(), "distances": distances.tolist(), "shoes": shoes[1].tolist()}


def assert_same_answers(found: dict, reference: dict):
    assert found["ids"] == reference["ids"] and found["shoes"] == reference["shoes"]
    np.testing.assert_allclose(found["distances"], reference["distances"], atol=1e-5)


@pytest.mark.slow
def test_a_milvus_lite_index_changed_and_saved_by_one_process_searches_in_another(tmp_path):
    """Milvus Lite opens a file in one process at a time, so every step is a new process: the builder must end."""
    database, folder = tmp_path / "catalogue.db", tmp_path / "index"
    in_a_new_process(BUILD, database, folder, tmp_path / "built.json")
    built = json.loads((tmp_path / "built.json").read_text())
    vectors, ids, table, queries = changed_sample()
    assert_same_answers(built, numpy_answers(vectors, ids, table, queries))
    np.testing.assert_array_equal(np.load(folder / "ids.npy"), ids)
    in_a_new_process(LOAD, database, folder, tmp_path / "reopened.json")
    assert_same_answers(json.loads((tmp_path / "reopened.json").read_text()), built)

    collection = json.loads((folder / "index.json").read_text())["collection"]
    in_a_new_process(DELETE, database, collection, ids[7])  # another client deletes one row
    refused = in_a_new_process(LOAD, database, folder, tmp_path / "refused.json", fails=True)
    assert refused == (f"ValueError: Milvus collection {collection!r} at {database} no longer holds the 37 rows "
                       f"saved in {folder} (another build replaced or changed it); build the engine saved in "
                       f"{tmp_path} again")


@pytest.mark.milvus_server
@pytest.mark.xdist_group("milvus_server")
def test_a_server_index_reopens_in_another_process_after_its_collection_was_released(milvus_server, tmp_path):
    """A server keeps a collection loaded for the process that built it (here, this one) until someone
    releases it (to free the server's memory) or the server restarts; a new process loads it again."""
    index = changed_index(uri=milvus_server, collection=f"reopen_{os.getpid()}")
    folder = tmp_path / "index"
    try:
        index.save(folder)
        vectors, ids, table, queries = changed_sample()
        built = answers(index, queries)
        assert_same_answers(built, numpy_answers(vectors, ids, table, queries))
        index.client.release_collection(index.collection)
        in_a_new_process(LOAD, milvus_server, folder, tmp_path / "reopened.json")
        assert_same_answers(json.loads((tmp_path / "reopened.json").read_text()), built)
        in_a_new_process(DELETE, milvus_server, index.collection, ids[7])
        refused = in_a_new_process(LOAD, milvus_server, folder, tmp_path / "refused.json", fails=True)
        assert refused.startswith(f"ValueError: Milvus collection {index.collection!r} at {milvus_server} no "
                                  "longer holds the 37 rows")
    finally:
        index.client.drop_collection(index.collection)
        index.close()


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
