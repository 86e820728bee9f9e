"""The per-image feature cache: adding 1 % new products to a catalogue against extracting it all.

A catalogue of ``--images`` files is simulated by copying the sample's photos (cycled) into a temporary
folder, each copy a file of its own. In one process, with one extractor and an empty cache folder:

1. full extraction of the catalogue (what every change cost with the one-file-per-catalogue cache);
2. the same catalogue plus ``--new-share`` new products: only those are extracted;
3. the same again, nothing changed: every row from the cache (stat of each file, checksum of each shard).

The new rows of step 2 are checked against an uncached extraction of the new images alone.

    python benchmarks/bench_cache.py            # 10,000 images + 1 %, efficientnet_lite0 (ImageNet): ~3 min on 2 cores
    python benchmarks/bench_cache.py --smoke    # 60 images + 3, seconds
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from common import add_json_option, note, print_header, print_table, sample_catalogue, write_json


def simulated_catalogue(folder: Path, n: int) -> list[str]:
    """``n`` image files in ``folder``: copies of the sample's photos, cycled."""
    photos = sample_catalogue().paths
    paths = []
    for i in range(n):
        path = folder / f"{i:07d}.jpg"
        shutil.copyfile(photos[i % len(photos)], path)
        paths.append(str(path))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000, help="products in the catalogue")
    parser.add_argument("--new-share", type=float, default=0.01, help="share of new products added")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--batch-size", type=int, default=0, help="0: the package's default for the device")
    parser.add_argument("--smoke", action="store_true", help="60 images + 3 new: checks the script runs")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.new_share = 60, 0.05

    print_header("Incremental feature cache: add new products vs extract everything",
                 ("numpy", "tensorflow", "keras", "PIL"))
    from cbir_tutorial import FeatureExtractor

    n_new = max(1, round(args.images * args.new_share))
    extractor = FeatureExtractor(args.backbone, args.weights, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        (Path(tmp) / "images").mkdir()
        paths = simulated_catalogue(Path(tmp) / "images", args.images + n_new)
        old, new = paths[:args.images], paths[args.images:]
        cache = Path(tmp) / "cache"
        extractor.extract(paths[:extractor.batch_size], cache=False, progress=False)  # warm-up: traces the model
        note(f"{extractor}, batch {extractor.batch_size}; catalogue: {len(old):,} copies of the sample's photos, "
             f"then {len(new):,} new ({100 * len(new) / len(old):.1f} %)\n")

        rows = []
        for step, images in (("full extraction (empty cache)", old),
                             (f"add {len(new):,} new products", paths),
                             ("nothing changed (all from cache)", paths)):
            start = time.perf_counter()
            result = extractor.extract(images, cache=cache, progress=False)
            seconds = time.perf_counter() - start
            rows.append({"step": step, "images": len(images), "extracted": result.extracted,
                         "reused": result.reused, "seconds": seconds, "img/s": len(images) / seconds})
            if step.startswith("add"):
                alone = extractor.extract(new, cache=False, progress=False).features
                gap = float(np.abs(result.features[len(old):] - alone).max())
        full = rows[0]["seconds"]
        for row in rows:
            row["time / full extraction"] = row["seconds"] / full
        rows[1]["largest diff vs uncached"] = gap  # of the new rows, against an uncached extraction of them
        store = extractor.store(cache)
        shards = sorted(store.folder.glob("*.npy"))
        rows[0]["note"] = (f"{len(store.shards)} shards, {sum(p.stat().st_size for p in shards) / 2**20:.1f} MiB "
                           f"of features on disk")
    print_table("Incremental cache (seconds, one process, same extractor)", rows,
                ["step", "images", "extracted", "reused", "seconds", "img/s", "time / full extraction",
                 "largest diff vs uncached", "note"])
    add, unchanged = rows[1], rows[2]
    note(f"Adding {100 * args.new_share:g} % new products took {add['seconds']:.2f} s against {full:.2f} s for a "
         f"full extraction: {full / add['seconds']:.1f}x faster ({add['time / full extraction']:.3f} of the time); "
         f"with nothing changed, {unchanged['seconds']:.2f} s.")
    write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
