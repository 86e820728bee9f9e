"""Search explorer: how long each interaction takes on a 10,000-product catalogue.

The catalogue is SIMULATED: the 770 sample products with their real features, then products whose
features mix the real features of two photos of one category (weights 0.5-0.9, small noise,
L2-normalised), so that every product has distinct features. Each has its own copy of its first photo
in a temporary folder (so thumbnails are made per product), that photo's gender and category, a new id
and a Farfetch-style display price ("€1,250", log-normal around €400) so that the price filter exists.
Extracting 10,000 real photos would take too long here; search and rendering only see the rows, so
their cost is that of a real 10,000-product catalogue. An upload is a real photo, decoded and run
through the backbone; a photo URL is one of the sample photos served from this process over HTTP
(127.0.0.1: the network's own latency is not included).

Each interaction sets a control's ``.value`` (or clicks) as the browser would and waits for the
explorer's Python side to finish: search, metrics and the HTML sent to the browser. The browser's own
drawing is not included (the HTML size is printed). Medians of ``--repeats`` (≥ 5) after one warm-up.
Every control the explorer offers is timed except the recipe (its first choice extracts the catalogue
again: see ``bench_quality.py``). After each row: K, the results shown (the fewest of any backbone shown)
and the products the filters allow. The sample photos are small (60x80), so thumbnails are cheap to make;
the last table (the parts of one query) also times a Farfetch-size (1000x1333) and a phone-size
(3000x4000) JPEG.

    python benchmarks/bench_explorer.py            # 10,000 products, efficientnet_lite0 (+ random weights)
    python benchmarks/bench_explorer.py --smoke    # 120 photos, 1,000 products, 5 repeats: checks it runs
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.server
import io
import itertools
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ipywidgets as w
import numpy as np

from common import add_json_option, median_seconds, note, print_header, print_table, sample_catalogue, write_json

#: Controls not timed, and why.
UNTIMED = {"recipe": "as its first choice extracts the whole catalogue again (bench_quality.py times recipes)"}


def simulated_rows(labels: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``n`` products: ``(photo, partner, weight)``: the first ``len(labels)`` are the sample itself
    (partner = photo, weight 1); each later one mixes a random photo with another of the same category."""
    rng = np.random.default_rng(seed)
    m = len(labels)
    photo = np.concatenate([np.arange(m), rng.integers(0, m, n - m)]) if n > m else np.arange(n)
    partner = photo.copy()
    by_label = {label: np.flatnonzero(labels == label) for label in np.unique(labels)}
    for i in range(m, n):
        partner[i] = rng.choice(by_label[labels[photo[i]]])
    weight = np.where(np.arange(n) < m, 1.0, rng.uniform(0.5, 0.9, n)).astype(np.float32)
    return photo, partner, weight


def simulated_catalogue(catalogue, photo: np.ndarray, folder: Path, seed: int = 0):
    """Rows of ``catalogue`` at ``photo``, each with its own copy of its photo in ``folder`` (so thumbnails
    are made per product), a new id ``<id>-<n>`` and a random euro display price; other metadata kept."""
    from cbir_tutorial.data.catalogue import Catalogue

    table = catalogue.table.iloc[photo].reset_index(drop=True)
    table["id"] = table["id"] + "-" + np.arange(len(photo)).astype(str)
    paths = []
    for i, source in enumerate(table["path"]):
        paths.append(str(folder / f"{i:05d}.jpg"))
        shutil.copyfile(source, paths[-1])
    table["path"] = paths
    prices = np.random.default_rng(seed).lognormal(np.log(400), 0.8, len(photo)).round(-1).clip(20, 20_000)
    table["price"] = [f"€{p:,.0f}" for p in prices]
    return Catalogue(table, f"{catalogue.name} simulated to {len(photo):,}")


def simulated_features(features: np.ndarray, photo, partner, weight, noise: float, seed: int = 0) -> np.ndarray:
    """``weight * f[photo] + (1 - weight) * f[partner]`` plus Gaussian noise of norm ``noise``, L2-normalised."""
    rng = np.random.default_rng(seed)
    w = weight[:, None]
    out = w * features[photo] + (1 - w) * features[partner]
    out += rng.standard_normal(out.shape, dtype=np.float32) * (noise / np.sqrt(features.shape[1]))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def enlarged(path: str, size: tuple[int, int]) -> bytes:
    """A sample photo resized to ``size`` (width, height) as JPEG bytes: real content, realistic file size."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(path).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def upload_value(path: str) -> tuple:
    content = Path(path).read_bytes()
    return ({"name": Path(path).name, "type": "image/jpeg", "size": len(content), "content": memoryview(content),
             "last_modified": datetime.datetime.now()},)


def photo_server(paths: list[str]) -> tuple[http.server.ThreadingHTTPServer, list[str]]:
    """A server of the photos at ``paths``, running in a daemon thread until its ``shutdown()``, and their
    addresses, ``http://127.0.0.1:<port>/<i>.jpg``."""
    files = {f"/{i}.jpg": Path(path).read_bytes() for i, path in enumerate(paths)}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass  # one stderr line per request otherwise

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, [f"http://127.0.0.1:{server.server_port}{name}" for name in files]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--second", default="random",
                        help="weights of a second engine of the same backbone for the switch/compare rows "
                             "('random', a weights file, or 'skip')")
    parser.add_argument("--noise", type=float, default=0.1, help="norm of the noise added to each simulated product")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--photos", type=int, default=0, help="sample photos to extract (0 = all 770)")
    parser.add_argument("--smoke", action="store_true", help="120 photos, 1,000 products, 5 repeats")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.photos, args.products, args.repeats = 120, 1_000, 5
    args.repeats = max(5, args.repeats)

    print_header("Search explorer: interaction latency", ("numpy", "pandas", "tensorflow", "ipywidgets"))
    from cbir_tutorial import FeatureExtractor, Pipeline, SearchEngine, make_index
    from cbir_tutorial.search.filters import ALL, Filters
    from cbir_tutorial.search.keys import product_keys
    from cbir_tutorial.ui import views
    from cbir_tutorial.ui.answer import answer_for
    from cbir_tutorial.ui.query import Query
    from cbir_tutorial.ui.widgets import SearchExplorer

    sample = sample_catalogue()
    if 0 < args.photos < len(sample):
        sample = sample.stratified_sample(args.photos, seed=0)
    photo, partner, weight = simulated_rows(sample.labels, args.products)
    folder = tempfile.TemporaryDirectory(prefix="bench_explorer_")
    catalogue = simulated_catalogue(sample, photo, Path(folder.name))
    engines = []
    weights_list = ["imagenet"] + ([] if args.second.lower() == "skip" else [args.second])
    for weights in weights_list:
        extractor = FeatureExtractor(args.backbone, weights)
        started = time.perf_counter()
        extraction = extractor.extract(sample.paths, progress=False)
        assert extraction.kept.all(), extraction.report()
        how = "from cache" if extraction.from_cache else f"extracted in {time.perf_counter() - started:.1f} s"
        features = simulated_features(extraction.features, photo, partner, weight, args.noise)
        index = make_index("exact", features, product_keys(catalogue.table["id"]), catalogue.table)  # filters read the table
        engines.append(SearchEngine(catalogue, Pipeline([extractor]), index))
        print(f"{extractor!r}: {len(sample)} real sample features ({how})")
    note(f"SIMULATED catalogue: {len(catalogue):,} products = the {len(sample)} sample products, then "
         f"{max(0, len(catalogue) - len(sample)):,} made by mixing the real features of two photos of one category "
         f"(weights 0.5-0.9) plus noise of norm {args.noise}, re-normalised; each has its own copy of its first "
         f"photo (60x80 JPEG, in {folder.name}), its gender and category, a new id and a random euro price.")

    started = time.perf_counter()
    explorer = SearchExplorer.from_engines(engines, k=args.k, row=0, progress=False)
    explorer.url_repeat_s = 0.0  # the search URL button fetches again at once
    c = explorer.controls
    outputs = [name for name, widget in c.items() if isinstance(widget, (w.HTML, w.Output))]
    note(f"Explorer ready in {time.perf_counter() - started:.2f} s (engines already built); "
         f"controls: {', '.join(name for name in c if name not in outputs)}; views: {', '.join(outputs)}")
    note("Not timed: " + "; ".join(f"{name}, {why}" for name, why in UNTIMED.items()) + "\n")
    n = len(catalogue)
    rng = np.random.default_rng(1)
    query_rows = itertools.cycle(rng.choice(n, size=64, replace=False).tolist())
    ks = itertools.cycle([25, 10, 50, 5, 20])
    categories = itertools.cycle(["Watches", "Tshirts", "Casual Shoes", "Handbags", ALL])
    low, high = c["price"].min, c["price"].max
    prices = itertools.cycle([(100.0, 500.0), (500.0, 2_000.0), (low, high), (50.0, 300.0)])
    photo_paths = [sample.paths[i] for i in rng.choice(len(sample), size=32, replace=False)]
    photos = itertools.cycle(photo_paths)
    backbones = itertools.cycle([e for e in explorer.shelf.choices][::-1])
    genders = itertools.cycle([*c["gender"].options[1:], ALL]) if "gender" in c else None
    server, addresses = photo_server(photo_paths)
    urls = itertools.cycle(addresses)

    def cold(fn):
        """``fn`` with the thumbnail cache emptied first: every result photo decoded and encoded again."""
        def run():
            views._path_thumbnail_uri.cache_clear()
            fn()
        return run

    def set_value(name, values):
        return lambda: setattr(c[name], "value", next(values))

    def compare_query():
        c["compare"].value = True
        c["query"].value = next(query_rows)

    # (what the user does, the control it uses, the interaction)
    interactions = [
        ("new query (catalogue row)", "query", cold(set_value("query", query_rows))),
        ("back to a query seen before (thumbnails cached)", "query", set_value("query", itertools.cycle([11, 12]))),
        ("random button", "random", lambda: c["random"].click()),
        ("new K (5 to 50)", "k", set_value("k", ks)),
        ("gender filter", "gender", set_value("gender", genders)),
        ("category filter", "category", set_value("category", categories)),
        ("price range filter", "price", set_value("price", prices)),
        ("uploaded photo (decode + features + search)", "upload",
         cold(set_value("upload", map(upload_value, photos)))),
        ("photo URL, served locally (fetch + decode + features + search)", "url", cold(set_value("url", urls))),
        ("search URL button (the same photo fetched again)", "fetch", cold(lambda: c["fetch"].click())),
    ]
    interactions = [(name, control, fn) for name, control, fn in interactions if control in c]
    if len(engines) > 1:
        interactions += [
            ("switch backbone (engine in memory)", "backbone", set_value("backbone", backbones)),
            (f"new query, compare mode ({len(engines)} backbones)", "compare", compare_query),
        ]

    first = next(iter(explorer.shelf.choices))

    def reset():
        """Back to K = args.k, no filter, one backbone, so each row changes one thing."""
        c["compare"].value = False
        c["backbone"].value = first
        c["k"].value = args.k
        for name in ("gender", "category"):
            if name in c:
                c[name].value = ALL
        c["price"].value = (low, high)

    table = []
    sink = io.StringIO()  # Output.clear_output prints terminal escapes outside Jupyter
    for name, control, fn in interactions:
        with contextlib.redirect_stdout(sink):
            reset()
            median, times = median_seconds(fn, repeats=args.repeats, warmup=1)
        assert "cannot be used" not in explorer.message and len(explorer.results) > 0, explorer.message
        html_kib = (len(c["results_view"].value) + len(c["query_view"].value)) / 1024
        shown = explorer.comparison or {explorer.backbone: explorer.results}
        table.append({"interaction": name, "control": control, "median ms": median * 1e3, "min ms": min(times) * 1e3,
                      "max ms": max(times) * 1e3, "HTML KiB": html_kib, "K": c["k"].value,
                      "results": min(len(results) for results in shown.values()),
                      "products allowed": explorer.answer.n_allowed, "backbones shown": len(shown)})
    server.shutdown()
    server.server_close()

    # The parts of one query: search + metrics alone, the HTML grid alone, an upload's features alone.
    key, shelf, query = first, explorer.shelf, Query.from_row(catalogue, 123)
    answer = answer_for(shelf, key, query, args.k)
    small_photo = Path(sample.paths[5]).read_bytes()
    farfetch_size, phone_size = enlarged(sample.paths[5], (1000, 1333)), enlarged(sample.paths[6], (3000, 4000))
    searches = {"search + P@K/AP@K (explorer.answer_for)": Filters(),
                "search with category + price filter": Filters(category="Tshirts", price=(100.0, 800.0))}
    parts = [(name, lambda filters=filters: answer_for(shelf, key, query, args.k, filters))
             for name, filters in searches.items()]
    parts += [
        ("results grid HTML, cold thumbnails", cold(lambda: views.results_html(answer))),
        ("results grid HTML, warm thumbnails", lambda: views.results_html(answer)),
        ("upload: decode + check (Query.from_upload)", lambda: Query.from_upload(small_photo)),
        ("upload: features of one photo", lambda: engines[0].extractor.features_of(small_photo)),
        ("thumbnail of a 1000x1333 JPEG (Farfetch photo size)", lambda: views.thumbnail_uri(farfetch_size)),
        ("upload of a 3000x4000 JPEG (phone photo): check + features",
         lambda: engines[0].extractor.features_of(Query.from_upload(phone_size).image)),
    ]
    table_parts = []
    for name, fn in parts:
        median, times = median_seconds(fn, repeats=args.repeats, warmup=1)
        table_parts.append({"part": name, "median ms": median * 1e3, "min ms": min(times) * 1e3,
                            "max ms": max(times) * 1e3})
        if name in searches:
            found = answer_for(shelf, key, query, args.k, searches[name])
            table_parts[-1].update({"results": len(found.results), "products allowed": found.n_allowed})

    print_table(f"Interactions on {n:,} products, K = {args.k} unless the row changes it "
                f"(median of {args.repeats}, Python side: callback start to HTML ready)", table)
    print_table(f"Where the time goes (one query on {n:,} products, K = {args.k})", table_parts,
                ["part", "median ms", "min ms", "max ms", "results", "products allowed"])
    folder.cleanup()
    write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
