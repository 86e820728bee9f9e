"""Catalogue loaders on the real sample photos and on synthetic Farfetch / folder layouts."""

import functools
import http.server
import os
import shutil
import threading
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from cbir_tutorial.data import loaders as data
from cbir_tutorial.data.catalogue import COLUMNS, Catalogue
from cbir_tutorial.data.loaders import (CHECKOUT_SAMPLE, find_farfetch_root, load_farfetch, load_fashion_products,
                                load_folder, load_sample)

SAMPLE = CHECKOUT_SAMPLE
needs_sample = pytest.mark.usefixtures("sample_dir")  # fails, naming the missing folder


def sample_photos(n):
    """The first ``n`` sample photos (sorted by file name)."""
    return sorted((SAMPLE / "images").glob("*.jpg"))[:n]


def assert_catalogue(catalogue):
    assert isinstance(catalogue, Catalogue)
    assert list(catalogue.table.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in catalogue.paths)


# --------------------------------------------------------------------------------------------------
# Sample catalogue


@needs_sample
def test_sample_from_env_folder(monkeypatch, capsys):
    monkeypatch.setenv(data.SAMPLE_ENV, str(SAMPLE))
    catalogue = load_sample()
    assert_catalogue(catalogue)
    assert len(catalogue) == 770
    assert catalogue.table["category"].nunique() == 30
    assert catalogue.n_dropped == 0
    assert catalogue.name == "fashion-sample"
    row = catalogue.table.set_index("id").loc["10268"]
    assert row["description"] == "Clarks Men Hang Work Leather Black Formal Shoes"
    assert row["category"] == "Formal Shoes"
    assert row["gender"] == "Men" and row["baseColour"] == "Black"
    assert row["path"] == str((SAMPLE / "images" / "10268.jpg").resolve())
    assert "kept 770 of 770" in capsys.readouterr().out


def test_sample_offline_names_both_options(monkeypatch, tmp_path):
    monkeypatch.delenv(data.SAMPLE_ENV, raising=False)
    monkeypatch.setattr(data, "CHECKOUT_SAMPLE", Path("/no/such/place"))
    monkeypatch.setenv("CBIR_TUTORIAL_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError) as error:
        load_sample()
    message = str(error.value)
    assert data.SAMPLE_ENV in message and "styles.csv" in message and "images/" in message
    assert "internet" in message and "download failed" in message
    assert f"{data.SAMPLE_COMMIT}/data/subset/fashion_subset.zip" in message
    assert message.count("raw.githubusercontent.com/jina-ai/example-multimodal-fashion-search") == 1
    assert not list((tmp_path / "cache" / "data").iterdir())  # nothing half-downloaded is kept


@pytest.fixture
def upstream(tmp_path, monkeypatch):
    """A stand-in for the pinned GitHub folder: a web server on 127.0.0.1 serving ``tmp_path/upstream``;
    yields that folder and records the requested paths in ``upstream.requests``."""
    folder = tmp_path / "upstream"
    folder.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setattr(data, "SAMPLE_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/{data.SAMPLE_COMMIT}")
    monkeypatch.delenv(data.SAMPLE_ENV, raising=False)
    monkeypatch.setattr(data, "CHECKOUT_SAMPLE", Path("/no/such/place"))
    monkeypatch.setenv("CBIR_TUTORIAL_CACHE", str(tmp_path / "cache"))
    (folder / data.SAMPLE_COMMIT).mkdir()
    try:
        yield folder / data.SAMPLE_COMMIT, requests
    finally:
        server.shutdown()
        server.server_close()


def test_sample_env_folder_must_hold_styles_and_images(monkeypatch, tmp_path):
    monkeypatch.setenv(data.SAMPLE_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="styles.csv"):
        load_sample()


@needs_sample
def test_sample_download_is_verified_extracted_and_loaded(upstream, monkeypatch):
    """A zip of 12 photos (in a sub-folder, with macOS junk) and the CSV, served over HTTP; their SHA-256
    must match the pinned ones, so the test pins its own files' hashes."""
    import hashlib

    folder, requests = upstream
    photos = sample_photos(12)
    with zipfile.ZipFile(folder / "fashion_subset.zip", "w") as zipped:
        for photo in photos:
            zipped.write(photo, f"fashion_subset/images/{photo.name}")
        zipped.writestr(f"__MACOSX/fashion_subset/images/._{photo.name}", b"junk")
    shutil.copy(SAMPLE / "styles.csv", folder / "fashion_subset.csv")
    for name in ("SAMPLE_ZIP", "SAMPLE_CSV"):
        file = getattr(data, name)[0]
        monkeypatch.setattr(data, name, (file, hashlib.sha256((folder / file).read_bytes()).hexdigest()))
    assert data.sample_source() == "downloaded on first use"  # what notebook 1's environment table says
    catalogue = load_sample()
    assert data.sample_source() == f"{data.cache_dir('data')} (downloaded)"
    assert_catalogue(catalogue)
    assert sorted(catalogue.table["id"]) == sorted(p.stem for p in photos)
    assert catalogue.n_dropped == 770 - 12
    assert sorted(requests) == [f"/{data.SAMPLE_COMMIT}/fashion_subset.csv", f"/{data.SAMPLE_COMMIT}/fashion_subset.zip"]

    (folder / "fashion_subset.zip").unlink()  # second call: served from the extracted cache, no download
    assert len(load_sample()) == 12 and len(requests) == 2


def test_a_sample_download_that_does_not_match_its_hash_is_refused_and_not_kept(upstream, tmp_path):
    folder, _ = upstream
    (folder / "fashion_subset.zip").write_bytes(b"not the pinned zip")
    with pytest.raises(RuntimeError, match="fashion_subset.zip does not match its SHA-256"):
        load_sample()
    assert not [p.name for p in (tmp_path / "cache" / "data").iterdir()]


# --------------------------------------------------------------------------------------------------
# Fashion Product Images layout


@needs_sample
def test_fashion_products_repairs_extra_commas_and_drops_missing_images(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    for photo in sample_photos(3):
        shutil.copy(photo, tmp_path / "images" / photo.name)
    ids = [p.stem for p in sample_photos(3)]
    header = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
    lines = [
        header,
        f"{ids[0]},Men,Apparel,Topwear,Tshirts,Red,Fall,2011,Casual,Wrangler Men Red T-Shirts",
        f"{ids[1]},Women,Accessories,Bags,Handbags,Brown,Winter,2015,Casual,Murcia Women, Hahk, Brown Handbags",
        f"{ids[2]},Men,Footwear,Shoes,Casual Shoes,Black,Fall,2011,Casual,Clarks Men Black Shoes",
        "99999999,Men,Footwear,Shoes,Casual Shoes,Black,Fall,2011,Casual,no photo for this one",
    ]
    (tmp_path / "styles.csv").write_text("\n".join(lines) + "\n")
    catalogue = load_fashion_products(tmp_path)
    assert_catalogue(catalogue)
    assert catalogue.table["id"].tolist() == ids
    assert catalogue.table["description"][1] == "Murcia Women, Hahk, Brown Handbags"
    assert catalogue.table["category"].tolist() == ["Tshirts", "Handbags", "Casual Shoes"]
    assert catalogue.table["masterCategory"][1] == "Accessories"
    assert (catalogue.table["brand"] == "").all() and (catalogue.table["price"] == "").all()
    assert catalogue.n_dropped == 1
    out = capsys.readouterr().out
    assert "kept 3 of 4" in out and "1 lines of styles.csv had extra commas" in out


def test_fashion_products_keep_the_first_row_of_a_repeated_id(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    photos = sample_photos(2)
    for photo in photos:
        shutil.copy(photo, tmp_path / "images" / photo.name)
    a, b = (p.stem for p in photos)
    lines = ["id,articleType,productDisplayName", f"{a},Tshirts,first", f"{b},Watches,other", f"{a},Tshirts,again"]
    (tmp_path / "styles.csv").write_text("\n".join(lines) + "\n")
    catalogue = load_fashion_products(tmp_path)
    assert catalogue.table["id"].tolist() == [a, b] and catalogue.table["description"].tolist() == ["first", "other"]
    assert capsys.readouterr().out == f"load_fashion_products({str(tmp_path)!r}): kept 2 of 3 listings; dropped 1 repeated ids\n"


@pytest.mark.parametrize("content, said", [
    (b"", "is empty: expected a CSV file with a header line and one line per product"),
    (b"id,articleType\n1,Caf\xe9\n", ": not UTF-8 text (byte 20: invalid continuation byte); save it as UTF-8 CSV"),
    (b"\xff\xfei\x00d\x00\n\x00", ": not UTF-8 text (byte 0: invalid start byte); save it as UTF-8 CSV"),
])
def test_a_broken_styles_csv_is_one_line_naming_it(tmp_path, content, said):
    (tmp_path / "images").mkdir()
    (tmp_path / "styles.csv").write_bytes(content)
    with pytest.raises(ValueError) as error:
        load_fashion_products(tmp_path)
    assert str(error.value) == f"{tmp_path / 'styles.csv'}{' ' if said.startswith('is') else ''}{said}"


def test_fashion_products_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_fashion_products(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as error:
        load_fashion_products(tmp_path)
    assert str(tmp_path / "styles.csv") in str(error.value) and "images/<id>.jpg" in str(error.value)


# --------------------------------------------------------------------------------------------------
# Farfetch listings

FARFETCH_COLUMNS = ["availableSizes", "brand.id", "brand.name", "gender", "id", "images.cutOut", "images.model",
                    "merchandiseLabel", "priceInfo.discountLabel", "priceInfo.finalPrice",
                    "priceInfo.formattedFinalPrice", "priceInfo.formattedInitialPrice", "priceInfo.initialPrice",
                    "shortDescription", "stockTotal"]


def farfetch_url(listing, kind):
    """A Farfetch CDN URL; cut-out and model photos of one listing have different file names."""
    photo = {"cutout": 1, "model": 2}[kind]
    return f"https://cdn-images.farfetch-contents.com/{listing}/{listing}_{1000 + photo}_480.jpg?c=2"


LISTINGS = [  # id, brand, gender, description, price
    ("15421332", "Balenciaga", "men", "Triple S sneakers", "$1,050"),
    ("15203547", "Gucci", "women", "logo print strap sandals", "$690"),
    ("14939125", "Erdem", "women", "Blake herringbone midi dress", "$2,350"),
    ("15380321", "Acne Studios", "men", "slim-fit jeans", "$280"),
    ("15558878", "Prada", "women", "leather belt bag", "$1,490"),
    ("14858844", "Off-White", "men", "pleated midi", "$410"),
]


def write_farfetch(root, with_index=True, n_with_images=4, layout="cutout-img/cutout", kind="cutout"):
    """A Farfetch layout under ``root``: the CSV for all LISTINGS (plus one repeated id), real sample
    photos for the first ``n_with_images`` listings only."""
    rows = []
    for listing, brand, gender, description, price in LISTINGS + [LISTINGS[0]]:
        row = dict.fromkeys(FARFETCH_COLUMNS, "")
        row.update({"brand.name": brand, "gender": gender, "id": listing, "shortDescription": description,
                    "images.cutOut": farfetch_url(listing, "cutout"), "images.model": farfetch_url(listing, "model"),
                    "priceInfo.formattedFinalPrice": price,
                    "priceInfo.finalPrice": price.strip("$").replace(",", "")})
        rows.append(row)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=FARFETCH_COLUMNS).to_csv(root / "current_farfetch_listings.csv", index=with_index)
    folder = root / layout
    folder.mkdir(parents=True)
    for (listing, *_), photo in zip(LISTINGS[:n_with_images], sample_photos(n_with_images)):
        name = farfetch_url(listing, kind).split("?")[0].rsplit("/", 1)[-1]
        shutil.copy(photo, folder / name)
    (folder / "unrelated.jpg").write_bytes(b"not in the CSV")
    return folder


@needs_sample
@pytest.mark.parametrize("with_index", [True, False])
def test_farfetch_keeps_listings_with_images(tmp_path, capsys, with_index):
    folder = write_farfetch(tmp_path / "farfetch", with_index=with_index)
    if with_index:
        assert pd.read_csv(tmp_path / "farfetch/current_farfetch_listings.csv").columns[0] == "Unnamed: 0"
    catalogue = load_farfetch(tmp_path / "farfetch", photos="cutout")
    assert_catalogue(catalogue)
    table = catalogue.table
    assert table["id"].tolist() == ["15421332", "15203547", "14939125", "15380321"]
    assert table["path"][0] == str(folder.resolve() / "15421332_1001_480.jpg")
    assert table["category"].tolist() == ["sneakers", "sandals", "dress", "jeans"]
    assert table["price"].tolist() == ["$1,050", "$690", "$2,350", "$280"]
    assert table["brand"][2] == "Erdem" and table["gender"][1] == "women"
    assert catalogue.n_dropped == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "kept 4 of 7" in out and "2 whose cutout image is not in" in out and "1 repeated ids" in out


@needs_sample
def test_farfetch_model_images_in_flat_folder(tmp_path):
    write_farfetch(tmp_path, layout="model", kind="model", n_with_images=6)
    catalogue = load_farfetch(tmp_path, photos="model")
    assert len(catalogue) == 6 and catalogue.n_dropped == 0
    assert catalogue.table["category"].tolist() == ["sneakers", "sandals", "dress", "jeans", "bag", ""]
    assert Path(catalogue.paths[0]).name == "15421332_1002_480.jpg"


@needs_sample
def test_farfetch_bad_arguments_are_named(tmp_path):
    write_farfetch(tmp_path)
    with pytest.raises(ValueError) as error:
        load_farfetch(tmp_path, photos="flat")
    assert "photos='flat'" in str(error.value) and "'model'" in str(error.value) and "'cutout'" in str(error.value)
    with pytest.raises(FileNotFoundError) as error:
        load_farfetch(tmp_path, photos="model")  # only cut-outs were written
    assert str(tmp_path / "model-img" / "model") in str(error.value)
    with pytest.raises(FileNotFoundError) as error:
        load_farfetch(tmp_path / "missing", photos="cutout")
    assert str(tmp_path / "missing") in str(error.value) and "current_farfetch_listings.csv" in str(error.value)
    with pytest.raises(FileNotFoundError) as error:
        load_farfetch(tmp_path, photos="cutout", csv="other.csv")
    assert str(tmp_path / "other.csv") in str(error.value)


def test_a_missing_farfetch_csv_names_the_csv_columns_as_the_csv_spells_them(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_farfetch(tmp_path, photos="cutout")
    assert all(column in str(error.value) for column in data.FARFETCH_URL_COLUMNS.values()), error.value
    assert "photos." not in str(error.value)


@pytest.mark.skipif(Path("/kaggle/input").exists(), reason="running on Kaggle")
def test_farfetch_without_root_says_what_to_do():
    with pytest.raises(FileNotFoundError) as error:
        load_farfetch()
    assert "root=" in str(error.value) and "attach" in str(error.value)


def test_find_farfetch_root(tmp_path):
    inputs = tmp_path / "input"
    (inputs / "other-dataset").mkdir(parents=True)
    assert find_farfetch_root(inputs) is None
    assert find_farfetch_root(tmp_path / "absent") is None
    deep = inputs / "datasets" / "alvations" / "farfetch-listings"
    deep.mkdir(parents=True)
    (deep / "current_farfetch_listings.csv").write_text("id\n")
    assert find_farfetch_root(inputs) == deep
    shallow = inputs / "farfetch-listings"
    shallow.mkdir()
    (shallow / "current_farfetch_listings.csv").write_text("id\n")
    assert find_farfetch_root(inputs) == shallow


# --------------------------------------------------------------------------------------------------
# Folder of images and dispatch


def test_load_folder(tmp_path):
    for name in ["dresses/b.JPG", "dresses/a.jpg", "bags/nested/c.png", "loose.webp", "bags/notes.txt",
                 ".hidden/d.jpg", "bags/.e.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    catalogue = load_folder(tmp_path)
    assert_catalogue(catalogue)
    table = catalogue.table
    assert table["id"].tolist() == ["bags/nested/c", "dresses/a", "dresses/b", "loose"]
    assert table["category"].tolist() == ["bags", "dresses", "dresses", ""]
    assert table["description"].tolist() == ["c", "a", "b", "loose"]
    assert table["path"][2] == str(tmp_path.resolve() / "dresses" / "b.JPG")
    assert catalogue.n_dropped == 0


def test_a_file_name_that_is_not_utf8_is_skipped_and_named(tmp_path, capsys):
    (tmp_path / "shoes").mkdir()
    (tmp_path / "shoes" / "a.jpg").write_bytes(b"")
    os.makedirs(os.fsencode(tmp_path / "bags") + b"/caf\xe9")
    with open(os.fsencode(tmp_path / "shoes") + b"/caf\xe9.jpg", "wb"), \
            open(os.fsencode(tmp_path / "bags") + b"/caf\xe9/b.jpg", "wb"):
        pass
    catalogue = load_folder(tmp_path)
    assert catalogue.table["id"].tolist() == ["shoes/a"]
    line = (f"load_folder({str(tmp_path)!r}): kept 1 of 3 listings; dropped 2 whose file name is not UTF-8 "
            "(such as b'bags/caf\\xe9/b.jpg'): rename them to include them")
    assert catalogue.notes == (line,) and capsys.readouterr().out == line + "\n"


def test_load_folder_missing_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_folder(tmp_path / "nowhere")


def test_sample_beside_a_checkout_is_found_without_the_env_var(monkeypatch):
    monkeypatch.delenv(data.SAMPLE_ENV, raising=False)
    monkeypatch.setattr(data, "CHECKOUT_SAMPLE", SAMPLE)
    assert len(load_sample()) == 770
    assert data.sample_source() == str(SAMPLE)
