"""Catalogue loaders: Kaggle's Farfetch listings, the Fashion Product Images layout, any image folder,
and the 770-photo sample catalogue.

Every loader returns a :class:`~cbir_tutorial.data.catalogue.Catalogue` whose table has the columns
``id, path, description, brand, price, category`` (strings, ``""`` where unknown) plus a few extra
columns of the source (``gender``...). Listings whose image file is missing are dropped, counted in
``Catalogue.n_dropped`` and reported in one printed line. See ``data/README.md`` for how to get each
dataset.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterable

import pandas as pd

from .catalogue import COLUMNS, Catalogue
from .categories import categories_from_descriptions
from ..paths import cache_dir

#: Image file extensions :func:`load_folder` picks up (compared lowercase).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")

FARFETCH_CSV = "current_farfetch_listings.csv"
FARFETCH_PHOTOS = ("cutout", "model")
#: Farfetch CSV column holding each image kind's URL.
FARFETCH_URL_COLUMNS = {"model": "images.model", "cutout": "images.cutOut"}
KAGGLE_INPUT = "/kaggle/input"
#: Environment variable that moves the Kaggle input folder (tests, a local copy of a Kaggle dataset).
KAGGLE_INPUT_ENV = "CBIR_TUTORIAL_KAGGLE_INPUT"

#: Environment variable naming a local folder with ``styles.csv`` + ``images/`` to use as the sample.
SAMPLE_ENV = "CBIR_TUTORIAL_DATA"
SAMPLE_REPOSITORY = "jina-ai/example-multimodal-fashion-search"
SAMPLE_COMMIT = "c92ee24811034c9cd2bdcfb2d6cbc8aaf7b62fad"
SAMPLE_BASE_URL = f"https://raw.githubusercontent.com/{SAMPLE_REPOSITORY}/{SAMPLE_COMMIT}/data/subset"
SAMPLE_ZIP = ("fashion_subset.zip", "9fb2c5078f29ae4ea282ac43652b2d324f1c10ce40eed032c1050f5c8da46528")
SAMPLE_CSV = ("fashion_subset.csv", "2f3da5554c23032d46451a5b3fd96a7d3767b9214808221f64ac6cf8e3f21d38")
#: Seconds without an answer after which a sample download gives up.
DOWNLOAD_TIMEOUT_S = 60


class SampleUnavailableError(RuntimeError):
    """The sample catalogue is neither available locally nor downloadable."""


# --------------------------------------------------------------------------------------------------
# Helpers


def _image_names(folder: Path) -> set[str]:
    """Names of the files directly inside ``folder`` (one ``os.scandir``, no per-file ``stat``)."""
    with os.scandir(folder) as entries:
        return {entry.name for entry in entries if entry.is_file()}


def _text(table: pd.DataFrame, column: str) -> pd.Series:
    """``table[column]`` as stripped strings (``""`` for missing values or a missing column)."""
    if column not in table.columns:
        return pd.Series("", index=table.index, dtype=object)
    return table[column].fillna("").astype(str).str.strip()


def _read_csv(csv_path: Path, **options) -> pd.DataFrame:
    """``pd.read_csv(csv_path, **options)``; ValueError in one line naming ``csv_path`` for a file that is
    empty, not UTF-8 or not CSV."""
    try:
        return pd.read_csv(csv_path, **options)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{csv_path} is empty: expected a CSV file with a header line and one line per "
                         "product") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{csv_path}: not UTF-8 text (byte {error.start:,}: {error.reason}); save it as UTF-8 "
                         "CSV") from None
    except (ValueError, csv.Error) as error:  # pandas' ParserError is a ValueError
        reason = " ".join(str(error).split())
        raise ValueError(f"{csv_path}: not a readable CSV file ({reason})") from None


def _first_of_each_id(ids: pd.Series) -> tuple[pd.Series, int]:
    """``(first, n_repeated)``: a mask keeping the first row of each id, and how many rows it leaves out
    (a repeated product would find itself and inflate MAP)."""
    first = ~ids.duplicated()
    return first, int((~first).sum())


def _report(loader: str, kept: int, total: int, reasons: Iterable[str]) -> str:
    """The one line a loader prints: how many rows it kept and why it dropped the others."""
    reasons = [r for r in reasons if r]
    line = f"{loader}: kept {kept:,} of {total:,} listings"
    line += f"; dropped {'; '.join(reasons)}" if reasons else ""
    print(line)
    return line


# --------------------------------------------------------------------------------------------------
# Farfetch listings (Kaggle: alvations/farfetch-listings)


def kaggle_input_dir() -> Path:
    """Where Kaggle mounts attached datasets: ``$CBIR_TUTORIAL_KAGGLE_INPUT`` or ``/kaggle/input``."""
    return Path(os.environ.get(KAGGLE_INPUT_ENV) or KAGGLE_INPUT).expanduser()


def find_farfetch_root(search: str | os.PathLike | None = None, depth: int = 3) -> Path | None:
    """The first folder at or up to ``depth`` levels below ``search`` (default :func:`kaggle_input_dir`)
    holding ``current_farfetch_listings.csv``, or ``None``.

    On Kaggle an attached dataset sits at ``/kaggle/input/<slug>/`` (or a level or two deeper), so
    ``load_farfetch()`` with no ``root`` works there. Image folders are not descended into.
    """
    skip = {f"{kind}-img" for kind in FARFETCH_PHOTOS} | set(FARFETCH_PHOTOS)
    level = [Path(search).expanduser() if search is not None else kaggle_input_dir()]
    for _ in range(depth + 1):
        below = []
        for folder in level:
            if (folder / FARFETCH_CSV).is_file():
                return folder
            try:
                with os.scandir(folder) as entries:
                    below.extend(Path(e.path) for e in entries
                                 if e.is_dir() and e.name not in skip and not e.name.startswith("."))
            except OSError:  # missing or unreadable folder
                continue
        level = sorted(below)
    return None


def layout_of(path: str | os.PathLike) -> str:
    """``"farfetch"`` (the listings CSV), ``"fashion-products"`` (``styles.csv``) or ``"folder"``."""
    path = Path(path)
    if (path / FARFETCH_CSV).is_file():
        return "farfetch"
    if (path / "styles.csv").is_file():
        return "fashion-products"
    return "folder"


def _farfetch_image_dir(root: Path, images: str) -> Path:
    """The folder holding the ``images`` photos: ``<root>/<images>-img/<images>/``, ``<root>/<images>-img/``
    or ``<root>/<images>/``."""
    candidates = [root / f"{images}-img" / images, root / f"{images}-img", root / images]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"No {images!r} image folder under {root}: looked for "
        + ", ".join(str(c) for c in candidates)
        + f". Expected the Kaggle layout {root}/{images}-img/{images}/<file>.jpg, one JPEG per listing "
        f"named like the last part of the CSV's {FARFETCH_URL_COLUMNS[images]!r} URL."
    )


def load_farfetch(root: str | os.PathLike | None = None, photos: str = "cutout",
                  csv: str | os.PathLike | None = None, *, kaggle_input: str | os.PathLike | None = None) -> Catalogue:
    """The Kaggle "Farfetch listings" catalogue (188,817 listings) with its ``photos`` photos.

    ``root``: the dataset folder (holding ``current_farfetch_listings.csv``, ``cutout-img/`` and
    ``model-img/``); ``None`` searches ``kaggle_input`` (default :func:`kaggle_input_dir`) with
    :func:`find_farfetch_root`. ``photos``: ``"cutout"`` (product alone on white) or ``"model"`` (worn by a model).
    ``csv``: another listings CSV (absolute, or relative to ``root``).

    Columns: ``id``, ``path``, ``description`` (``shortDescription``), ``brand`` (``brand.name``),
    ``price`` (``priceInfo.formattedFinalPrice``), ``category`` (derived from the description with
    :func:`~cbir_tutorial.data.categories.category_from_description`), ``gender``, ``image`` (file name).
    Listings without an image file are dropped (``n_dropped``); repeated ids keep their first row.
    """
    if photos not in FARFETCH_PHOTOS:
        raise ValueError(f"photos={photos!r} is not supported; use one of: {', '.join(map(repr, FARFETCH_PHOTOS))}")
    if root is None:
        root = find_farfetch_root(kaggle_input)
        if root is None:
            where = kaggle_input if kaggle_input is not None else kaggle_input_dir()
            raise FileNotFoundError(
                f"No Farfetch listings found: no {FARFETCH_CSV} under {where}. Pass root= (the folder "
                f"holding {FARFETCH_CSV}, cutout-img/ and model-img/) or attach the Kaggle dataset "
                "'alvations/farfetch-listings' to the notebook (see data/README.md)."
            )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"Farfetch root {root} does not exist: expected a folder holding {FARFETCH_CSV}, "
            "cutout-img/cutout/ and model-img/model/ (see data/README.md)."
        )
    csv_path = root / FARFETCH_CSV if csv is None else Path(csv).expanduser()
    if not csv_path.is_absolute() and not csv_path.exists():
        csv_path = root / csv_path
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"Farfetch listings CSV {csv_path} not found: expected {FARFETCH_CSV} (one row per listing, "
            "with columns id, shortDescription, brand.name, images.model, images.cutOut...)."
        )
    image_dir = _farfetch_image_dir(root, photos)

    url_column = FARFETCH_URL_COLUMNS[photos]
    wanted = {"id", "brand.name", "gender", "shortDescription", url_column,
              "priceInfo.formattedFinalPrice", "priceInfo.finalPrice"}
    raw = _read_csv(csv_path, usecols=lambda c: c in wanted, dtype=str, keep_default_na=False)
    missing = [c for c in ("id", url_column) if c not in raw.columns]
    if missing:
        raise ValueError(f"{csv_path} lacks columns {missing}: is it the Farfetch listings CSV?")

    total = len(raw)
    names = _text(raw, url_column).str.split("?", n=1).str[0].str.rsplit("/", n=1).str[-1]
    has_image = names.isin(_image_names(image_dir)) & (names != "")
    raw, names = raw[has_image], names[has_image]
    n_dropped = total - len(raw)
    ids = _text(raw, "id")
    first, n_repeated = _first_of_each_id(ids)
    raw, names, ids = raw[first], names[first], ids[first]

    price = _text(raw, "priceInfo.formattedFinalPrice")
    if "priceInfo.formattedFinalPrice" not in raw.columns:
        price = _text(raw, "priceInfo.finalPrice")
    description = _text(raw, "shortDescription")
    table = pd.DataFrame({
        "id": ids,
        "path": str(image_dir.resolve()) + os.sep + names,
        "description": description,
        "brand": _text(raw, "brand.name"),
        "price": price,
        "category": categories_from_descriptions(description),
        "gender": _text(raw, "gender"),
        "image": names,
    })
    line = _report(f"load_farfetch({photos!r})", len(table), total, [
        f"{n_dropped:,} whose {photos} image is not in {image_dir}" if n_dropped else "",
        f"{n_repeated:,} repeated ids" if n_repeated else "",
    ])
    return Catalogue(table, name=f"farfetch-{photos}", root=root, n_dropped=n_dropped, notes=(line,))


# --------------------------------------------------------------------------------------------------
# Fashion Product Images (Kaggle: paramaggarwal/fashion-product-images-small) and the sample


def _read_styles(csv_path: Path) -> tuple[pd.DataFrame, int]:
    """``styles.csv`` as strings, and how many lines had extra fields.

    Kaggle's ``styles.csv`` has a few lines whose ``productDisplayName`` (the last column) contains
    unquoted commas; their extra fields are joined back into that last column instead of failing.
    """
    header = _read_csv(csv_path, nrows=0).columns
    width, repaired = len(header), []

    def join_extra_fields(fields: list[str]) -> list[str]:
        repaired.append(fields)
        return fields[: width - 1] + [",".join(fields[width - 1:])]

    table = _read_csv(csv_path, dtype=str, keep_default_na=False, engine="python", on_bad_lines=join_extra_fields)
    return table, len(repaired)


def _load_styles(csv_path: Path, image_dir: Path, name: str, loader: str) -> Catalogue:
    """A catalogue from a Fashion-Product-Images ``styles.csv`` and the folder of ``<id>.<ext>`` photos."""
    styles, n_repaired = _read_styles(csv_path)
    if "id" not in styles.columns:
        raise ValueError(f"{csv_path} has no 'id' column (columns: {list(styles.columns)}): is it a styles.csv?")
    total = len(styles)
    by_stem = {}
    for file_name in sorted(_image_names(image_dir)):
        stem, ext = os.path.splitext(file_name)
        if ext.lower() in IMAGE_EXTENSIONS:
            by_stem.setdefault(stem, file_name)
    ids = _text(styles, "id")
    names = ids.map(by_stem)
    keep = names.notna() & (ids != "")
    styles, ids, names = styles[keep], ids[keep], names[keep]
    n_dropped = total - len(styles)
    first, n_repeated = _first_of_each_id(ids)
    styles, ids, names = styles[first], ids[first], names[first]

    table = pd.DataFrame({
        "id": ids,
        "path": str(image_dir.resolve()) + os.sep + names,
        "description": _text(styles, "productDisplayName"),
        "brand": _text(styles, "brand"),
        "price": _text(styles, "price"),
        "category": _text(styles, "articleType"),
    })
    for column in ("gender", "baseColour", "masterCategory", "subCategory"):
        if column in styles.columns:
            table[column] = _text(styles, column)
    line = _report(loader, len(table), total, [
        f"{n_dropped:,} whose image <id>.jpg is not in {image_dir}" if n_dropped else "",
        f"{n_repeated:,} repeated ids" if n_repeated else "",
    ])
    notes = (line,)
    if n_repaired:
        notes += (f"{n_repaired} lines of {csv_path.name} had extra commas; joined into the last column",)
        print(notes[-1])
    return Catalogue(table, name=name, root=csv_path.parent, n_dropped=n_dropped, notes=notes)


def load_fashion_products(root: str | os.PathLike) -> Catalogue:
    """The "Fashion Product Images" layout: ``<root>/styles.csv`` + ``<root>/images/<id>.jpg``.

    Columns: ``description`` = ``productDisplayName``, ``category`` = ``articleType``, ``brand`` and
    ``price`` ``""`` (the CSV has neither; a ``brand``/``price`` column is used if present), plus
    ``gender``, ``baseColour``, ``masterCategory``, ``subCategory``. Rows without an image are dropped.
    """
    root = Path(root).expanduser()
    expected = f"expected {root}/styles.csv and {root}/images/<id>.jpg (the Fashion Product Images layout)"
    if not root.is_dir():
        raise FileNotFoundError(f"Catalogue folder {root} does not exist: {expected}.")
    for path in (root / "styles.csv", root / "images"):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: {expected}.")
    return _load_styles(root / "styles.csv", root / "images", root.name or "fashion-products",
                        f"load_fashion_products({str(root)!r})")


def _sample_download_message(reason: object) -> str:
    return (
        f"The sample catalogue is not available ({reason}). Either\n"
        f"  1. set {SAMPLE_ENV}=/path/to/folder holding styles.csv and images/<id>.jpg "
        "(e.g. the fashion-sample folder), or\n"
        f"  2. connect to the internet so it can download from {SAMPLE_BASE_URL}/{SAMPLE_ZIP[0]} "
        f"(and {SAMPLE_CSV[0]}) into {cache_dir('data')}."
    )


def _image_folder(root: Path) -> Path:
    """The folder below ``root`` holding the most ``.jpg`` files (macOS ``__MACOSX`` ignored)."""
    counts: dict[Path, int] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__MACOSX" and not d.startswith("."))
        n = sum(f.lower().endswith(".jpg") and not f.startswith(".") for f in files)
        if n:
            counts[Path(folder)] = n
    if not counts:
        raise SampleUnavailableError(f"The downloaded {SAMPLE_ZIP[0]} holds no .jpg files (extracted to {root}).")
    return max(counts, key=counts.get)


def _extract_once(archive: Path, target: Path) -> Path:
    """``archive`` extracted into ``target`` (done once; a half-finished extraction is never used)."""
    done = target / ".extracted"
    if not done.exists():
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(partial)
        (partial / ".extracted").write_text(archive.name)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    return target


def _downloaded(file_name: str, sha256: str, folder: Path) -> Path:
    """``folder/file_name``: the sample file of that name, downloaded once and checked against ``sha256``
    (a download that breaks off or does not match is never kept)."""
    path = folder / file_name
    if path.is_file() and _sha256(path) == sha256:
        return path
    partial = path.with_name(f".{file_name}.{os.getpid()}.partial")
    try:
        with urllib.request.urlopen(f"{SAMPLE_BASE_URL}/{file_name}", timeout=DOWNLOAD_TIMEOUT_S) as answer, \
                open(partial, "wb") as out:
            shutil.copyfileobj(answer, out)
        if _sha256(partial) != sha256:
            raise SampleUnavailableError(_sample_download_message(f"{file_name} does not match its SHA-256"))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_sample() -> tuple[Path, Path]:
    """The sample's ``(csv, image folder)``, downloaded, hash-checked and extracted on first use."""
    folder = cache_dir("data")
    extracted = folder / "fashion_subset"
    csv_path = folder / SAMPLE_CSV[0]
    if (extracted / ".extracted").exists() and csv_path.is_file():
        return csv_path, _image_folder(extracted)
    try:
        files = {name: _downloaded(name, sha256, folder) for name, sha256 in (SAMPLE_ZIP, SAMPLE_CSV)}
    except (OSError, ValueError) as error:  # offline, proxy, refused, timed out (URLError is an OSError)
        raise SampleUnavailableError(_sample_download_message(f"download failed: {error}")) from error
    return files[SAMPLE_CSV[0]], _image_folder(_extract_once(files[SAMPLE_ZIP[0]], extracted))


#: Where a source checkout finds the sample without downloading it: ``../shared/data/fashion-sample``.
CHECKOUT_SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "fashion-sample"


def _checkout_sample() -> str | None:
    if (CHECKOUT_SAMPLE / "styles.csv").is_file() and (CHECKOUT_SAMPLE / "images").is_dir():
        return str(CHECKOUT_SAMPLE)
    return None


def sample_source() -> str:
    """Where :func:`load_sample` reads the sample from, in words: ``$CBIR_TUTORIAL_DATA``'s folder, the copy
    beside a source checkout, the download already in the cache, or "downloaded on first use"."""
    local = os.environ.get(SAMPLE_ENV) or _checkout_sample()
    if local:
        return local
    folder = cache_dir("data")
    if (folder / "fashion_subset" / ".extracted").exists() and (folder / SAMPLE_CSV[0]).is_file():
        return f"{folder} (downloaded)"
    return "downloaded on first use"


def load_sample() -> Catalogue:
    """The 770-photo sample catalogue (30 ``articleType`` categories, 60x80 JPEGs).

    If ``$CBIR_TUTORIAL_DATA`` names a folder with ``styles.csv`` + ``images/``, that folder is loaded
    with :func:`load_fashion_products`. Otherwise the subset of the public repository
    ``jina-ai/example-multimodal-fashion-search`` (pinned commit, SHA-256 checked) is downloaded once
    into ``cache_dir("data")``; before downloading, a copy laid beside a source checkout
    (:data:`CHECKOUT_SAMPLE`) is used. Raises :class:`SampleUnavailableError` when neither works.
    """
    local = os.environ.get(SAMPLE_ENV) or _checkout_sample()
    if local:
        root = Path(local).expanduser()
        if not ((root / "styles.csv").is_file() and (root / "images").is_dir()):
            raise FileNotFoundError(
                f"{SAMPLE_ENV}={local}: expected a folder holding styles.csv and images/<id>.jpg; "
                f"unset {SAMPLE_ENV} to download the sample instead."
            )
        catalogue = load_fashion_products(root)
        return Catalogue(catalogue.table, "fashion-sample", catalogue.root, catalogue.n_dropped, catalogue.notes)
    csv_path, image_dir = _download_sample()
    return _load_styles(csv_path, image_dir, "fashion-sample", "load_sample()")


# --------------------------------------------------------------------------------------------------
# Any folder of images


def load_folder(path: str | os.PathLike) -> Catalogue:
    """Every image below ``path`` (jpg/jpeg/png/webp/bmp/gif, any case, recursive, sorted by path).

    ``id`` = path relative to ``path`` without extension (``"dresses/red_01"``); ``category`` = the
    first sub-folder name (``""`` for files directly in ``path``); ``description`` = the file stem.
    Hidden files and folders (names starting with ``.``) are skipped.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"Image folder {root} does not exist: expected a folder of image files "
                                f"({', '.join(IMAGE_EXTENSIONS)}), optionally in one sub-folder per category.")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is a file: load_folder expects a folder of images.")
    relative, not_utf8 = [], []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(folder).relative_to(root)
        for f in files:
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                (relative if _is_utf8(str(base / f)) else not_utf8).append(base / f)
    relative.sort(key=lambda p: p.as_posix())
    resolved = root.resolve()
    table = pd.DataFrame({
        "id": [p.with_suffix("").as_posix() for p in relative],
        "path": [str(resolved / p) for p in relative],
        "description": [p.stem for p in relative],
        "brand": "",
        "price": "",
        "category": [p.parts[0] if len(p.parts) > 1 else "" for p in relative],
    }, columns=list(COLUMNS))
    notes = ()
    if not_utf8:
        example = os.fsencode(sorted(not_utf8)[0])
        notes = (_report(f"load_folder({str(root)!r})", len(table), len(table) + len(not_utf8), [
            f"{len(not_utf8):,} whose file name is not UTF-8 (such as {example!r}): rename them to include them"]),)
    return Catalogue(table, name=root.name or str(root), root=root, notes=notes)


def _is_utf8(name: str) -> bool:
    """False for a file name with bytes that are not UTF-8 (Python holds them as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: Catalogue words besides a folder path.
CATALOGUE_WORDS = ("auto", "sample", "farfetch")
#: Catalogue layouts (``format``); ``"auto"`` detects the layout of a folder.
FORMATS = ("auto", "farfetch", "fashion-products", "folder", "sample")


def load_catalogue(source: str | os.PathLike | None = "auto", format: str = "auto", *, photos: str = "cutout",
                   kaggle_input: str | os.PathLike | None = None):
    """The :class:`~cbir_tutorial.data.catalogue.Catalogue` that ``source`` names.

    ``source``: ``"auto"`` (the Farfetch listings when attached under the Kaggle input folder, else
    the sample), ``"sample"``, ``"farfetch"`` (found under the Kaggle input folder) or a folder path.
    ``format``: the folder's layout, ``"auto"`` to detect it (Farfetch CSV, ``styles.csv`` +
    ``images/``, else any folder of images). ``photos``: Farfetch's ``"cutout"`` or ``"model"`` photos.
    ``kaggle_input``: where Kaggle datasets are (default ``$CBIR_TUTORIAL_KAGGLE_INPUT`` or ``/kaggle/input``).
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not supported; use one of: {', '.join(FORMATS)}")
    word = "auto" if source is None else str(source).strip()
    key = word.lower()
    if key in CATALOGUE_WORDS and format not in ("auto", "sample", "farfetch"):
        raise ValueError(f"format={format!r} needs a catalogue folder, not {word!r}")
    if format == "sample" or key == "sample":
        return load_sample()
    if key == "auto":
        found = find_farfetch_root(kaggle_input)
        if format == "farfetch" and found is None:
            return load_farfetch(None, photos, kaggle_input=kaggle_input)  # raises, saying where it looked
        return load_farfetch(found, photos) if found is not None else load_sample()
    if key == "farfetch":
        return load_farfetch(None, photos, kaggle_input=kaggle_input)
    path = Path(word).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"catalogue {word!r}: no such folder. Use one of {', '.join(CATALOGUE_WORDS)} "
                                "or the folder of a catalogue (see data/README.md).")
    if format == "auto":
        format = layout_of(path)
    if format == "farfetch":
        return load_farfetch(path, photos)
    if format == "fashion-products":
        return load_fashion_products(path)
    return load_folder(path)
