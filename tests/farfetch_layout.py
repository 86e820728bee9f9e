"""A Farfetch-layout dataset made from the sample's real photos, as Kaggle mounts "alvations/farfetch-listings".

``build_farfetch_layout(root, sample_dir)`` writes::

    root/current_farfetch_listings.csv     the real 23 columns (a blank-named index column + 22 named ones)
    root/cutout-img/cutout/<id>_<photo>_480.jpg   the sample's photo of each listing
    root/model-img/model/<id>_<photo>_480.jpg     the same photo mirrored (another file, another name)

with what the real listings hold and a loader must survive: euro prices written ``"€1,250"`` (sales
with a discount label), listings whose photos are missing, short descriptions from which no category
can be derived (the sample's "Leather Heels", "Jerseys"..., plus a few added), and a few unreadable
image files (truncated, empty, not an image).

Command line (e.g. to try the notebooks on it): ``python tests/farfetch_layout.py ROOT [SAMPLE_DIR]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

CSV_NAME = "current_farfetch_listings.csv"
#: The named columns of Kaggle's current_farfetch_listings.csv; the file starts with a blank-named index column.
COLUMNS = ("availableSizes", "brand.id", "brand.name", "gender", "hasSimilarProducts", "id", "images.cutOut",
           "images.model", "isCustomizable", "merchandiseLabel", "merchandiseLabelField", "merchantId",
           "priceInfo.currencyCode", "priceInfo.discountLabel", "priceInfo.finalPrice",
           "priceInfo.formattedFinalPrice", "priceInfo.formattedInitialPrice", "priceInfo.initialPrice",
           "priceInfo.installmentsLabel", "priceInfo.isOnSale", "shortDescription", "stockTotal")
GENDERS = {"men": "men", "women": "women", "boys": "kids", "girls": "kids", "kids": "kids", "unisex": "unisex"}
#: Descriptions as Farfetch writes them that name no product type (category ``""``).
NO_CATEGORY = ("logo print", "pleated midi", "Gift card", "crystal-embellished mini")
UNREADABLE = ("truncated", "empty", "text")


def cdn_url(listing: int, photo: int) -> str:
    """A Farfetch CDN URL (query string included); its last path part is the image file name."""
    digits = f"{listing:08d}"
    folders = "/".join(digits[i:i + 2] for i in range(0, 8, 2))
    return f"https://cdn-images.farfetch-contents.com/{folders}/{listing}_{photo}_480.jpg?c=2"


def file_name(url: str) -> str:
    return url.split("?", 1)[0].rsplit("/", 1)[-1]


def euros(amount: int) -> str:
    return f"€{amount:,}"


def split_display_name(name: str) -> tuple[str, str, str]:
    """``"Clarks Women Brown Leather Heels"`` → ``("Clarks", "women", "Brown Leather Heels")``."""
    words = name.split()
    for i, word in enumerate(words):
        if word.lower() in GENDERS:
            return " ".join(words[:i]) or "Unbranded", GENDERS[word.lower()], " ".join(words[i + 1:]) or name
    return words[0] if words else "Unbranded", "unisex", " ".join(words[1:]) or name


def build_farfetch_layout(root: str | Path, sample_dir: str | Path, *, n_listings: int | None = None,
                          n_without_photo: int = 12, seed: int = 0) -> Path:
    """Write the dataset under ``root`` (created) from the sample at ``sample_dir``; returns ``root``.

    ``n_listings``: sample products used (``None``: all but the last four), in the order of ``styles.csv``.
    Then :data:`NO_CATEGORY` descriptions are added with the sample's last four photos (every photo
    appears once: no exact ties in a ranking), ``n_without_photo`` listings get no photo file, and the
    cut-outs of three listings are unreadable (:data:`UNREADABLE`).
    """
    root, sample_dir = Path(root), Path(sample_dir)
    styles = pd.read_csv(sample_dir / "styles.csv", dtype=str, keep_default_na=False, on_bad_lines="skip")
    styles = styles[[(sample_dir / "images" / f"{i}.jpg").is_file() for i in styles["id"]]]
    spare, styles = styles.iloc[-len(NO_CATEGORY):], styles.iloc[:-len(NO_CATEGORY)]  # photos for NO_CATEGORY
    styles = styles.iloc[:n_listings] if n_listings is not None else styles
    rng = np.random.default_rng(seed)
    cutouts, models = root / "cutout-img" / "cutout", root / "model-img" / "model"
    cutouts.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)

    photos = [sample_dir / "images" / f"{i}.jpg" for i in styles["id"]]
    names = [split_display_name(n) for n in styles["productDisplayName"]]
    photos += [sample_dir / "images" / f"{i}.jpg" for i in spare["id"]]  # photos of no other listing
    names += [(split_display_name(name)[0], "women", text) for name, text in zip(spare["productDisplayName"], NO_CATEGORY)]
    n = len(photos)
    without_photo = set(rng.choice(n, size=min(n_without_photo, n // 4), replace=False).tolist())
    unreadable = dict(zip([i for i in range(n // 3, n) if i not in without_photo][::max(1, n // 10)], UNREADABLE))

    rows = []
    for i, (photo, (brand, gender, description)) in enumerate(zip(photos, names)):
        listing = 13_000_000 + 7919 * i
        final = int(round(rng.lognormal(6.3, 0.9) / 5) * 5) + 45  # €45 to several thousand
        on_sale = bool(rng.random() < 0.3)
        initial = int(round(final / 0.7 / 5) * 5) if on_sale else final
        cutout_url, model_url = cdn_url(listing, 10_000_000 + 2 * i), cdn_url(listing, 10_000_001 + 2 * i)
        rows.append({
            "availableSizes": "" if rng.random() < 0.2 else "XS, S, M, L",
            "brand.id": str(1_000 + sum(map(ord, brand)) % 9_000), "brand.name": brand, "gender": gender,
            "hasSimilarProducts": "True", "id": str(listing), "images.cutOut": cutout_url, "images.model": model_url,
            "isCustomizable": "False", "merchandiseLabel": "New Season" if rng.random() < 0.3 else "",
            "merchandiseLabelField": "", "merchantId": str(9_000 + i % 37), "priceInfo.currencyCode": "EUR",
            "priceInfo.discountLabel": "30% Off" if on_sale else "", "priceInfo.finalPrice": str(final),
            "priceInfo.formattedFinalPrice": euros(final), "priceInfo.formattedInitialPrice": euros(initial),
            "priceInfo.initialPrice": str(initial), "priceInfo.installmentsLabel": "",
            "priceInfo.isOnSale": str(on_sale), "shortDescription": description,
            "stockTotal": str(int(rng.integers(1, 30))),
        })
        if i in without_photo:
            continue
        with Image.open(photo) as image:
            image.convert("RGB").save(cutouts / file_name(cutout_url), quality=92)
            ImageOps.mirror(image.convert("RGB")).save(models / file_name(model_url), quality=92)
        kind = unreadable.get(i)
        if kind == "truncated":
            data = (cutouts / file_name(cutout_url)).read_bytes()
            (cutouts / file_name(cutout_url)).write_bytes(data[: len(data) // 3])
        elif kind == "empty":
            (cutouts / file_name(cutout_url)).write_bytes(b"")
        elif kind == "text":
            (cutouts / file_name(cutout_url)).write_text("<html>404 Not Found</html>")
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(root / CSV_NAME, index=True)
    return root


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python tests/farfetch_layout.py ROOT [SAMPLE_DIR]")
    sample = sys.argv[2] if len(sys.argv) == 3 else Path(__file__).resolve().parents[2] / "shared/data/fashion-sample"
    print(build_farfetch_layout(sys.argv[1], sample))
