"""Command line: ``python -m cbir_tutorial demo | search | evaluate | train | engine build|add|remove|info``."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path

from .data.images import RESIZE_POLICIES
from .data.loaders import CATALOGUE_WORDS, FARFETCH_PHOTOS, FORMATS
from .models.backbones import BACKBONES, OFFLINE_BACKBONE
from .models.trained import EMBEDDING_DIM_RANGE, INPUT_SIZE_RANGE  # what a trained model's folder may describe
from .search.backends import SEARCH_BACKENDS

#: The --loss and --protocol choices (cbir_tutorial.training.losses.LOSSES, without importing TensorFlow).
LOSS_NAMES = ("proxy-anchor", "multi-similarity")
PROTOCOL_NAMES = ("none", "unseen-products", "unseen-categories", "new-types")
#: ``--seed``: what NumPy's and Keras's seeding take.
SEED_RANGE = (0, 2 ** 32 - 1)


#: The options that choose what an engine is built from, with their defaults (``--engine`` takes none of them).
CATALOGUE_DEFAULTS = {"catalogue": "auto", "format": "auto", "backbone": None, "weights": "imagenet", "photos": None,
                      "resize": None, "limit": None, "no_cache": False, "recipe": "baseline", "index": "exact"}

RECIPE_HELP = ("a named recipe: baseline (default), best, ... (see cbir_tutorial.search.recipes), or the folder "
               "of a trained model (python -m cbir_tutorial train --out DIR)")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, telling a bad command line in one line: what is wrong and where the options are listed."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def _bounded(low: int, high: int | None = None):
    """An argparse ``type=``: a whole number from ``low`` to ``high`` (both included; None: no upper end),
    else an error naming the allowed range."""
    allowed = f"a whole number from {low} to {high}" if high is not None else f"a whole number, {low} or more"

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {allowed}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: expected {allowed}")
        return value

    return whole_number


def _learning_rate(text: str) -> float:
    """An argparse ``type=``: a positive number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number, such as 1e-3")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cbir_tutorial",
                     description="Fashion image search engine (content-based image retrieval).")
    sub = parser.add_subparsers(dest="command", required=True)

    def catalogue_options(p):
        p.add_argument("--catalogue", default="auto",
                       help="auto (Farfetch when attached on Kaggle, else the sample), sample, farfetch or a folder")
        p.add_argument("--format", default="auto", help=f"the folder's layout: {', '.join(FORMATS)}")
        p.add_argument("--backbone", default=None,
                       help=f"{', '.join(BACKBONES)} (default: the recipe's own, {OFFLINE_BACKBONE} for every "
                            "named recipe)")
        p.add_argument("--weights", default="imagenet",
                       help="imagenet (default), random (also none, untrained) or a weights file path")
        p.add_argument("--photos", default=None, choices=FARFETCH_PHOTOS,
                       help="Farfetch listings only: cutout (default) or model photos")
        p.add_argument("--resize", default=None,
                       help=f"{' or '.join(RESIZE_POLICIES)} (default: squash, or a trained model's own)")
        p.add_argument("--limit", type=_bounded(1), default=None,
                       help="use a random subset of about this many products, each category in proportion (at "
                            "least 2 of each kept: the number used is printed)")
        p.add_argument("--k", type=_bounded(1), default=10)
        p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")

    def index_uri(p):
        p.add_argument("--index-uri", default=None,
                       help="--index milvus: a Milvus server URI or Milvus Lite .db file (default: a Milvus Lite "
                            "file in the cache)")

    def build_options(p):
        p.add_argument("--recipe", default="baseline", help=RECIPE_HELP)
        p.add_argument("--index", default="exact", help=f"search backend: {' | '.join(SEARCH_BACKENDS)}")
        index_uri(p)

    def common(p):
        catalogue_options(p)
        build_options(p)
        p.add_argument("--engine", default=None, metavar="DIR",
                       help="search a saved engine (python -m cbir_tutorial engine build) instead of building one "
                            "from --catalogue")

    demo = sub.add_parser("demo", help="index the sample catalogue, run one query, print results and MAP@10")
    demo.add_argument("--backbone", default=OFFLINE_BACKBONE,
                      help=f"{', '.join(BACKBONES)}; without internet, ImageNet weights other than "
                           f"{OFFLINE_BACKBONE}'s fall back to it")
    demo.add_argument("--k", type=_bounded(1), default=10)
    demo.add_argument("--recipe", default="baseline", help=RECIPE_HELP)
    demo.add_argument("--query", default=None,
                      help="query image file or http(s) URL of a photo (default: a catalogue product)")
    demo.add_argument("--out", default="cbir_demo.png", help="where to write the result grid PNG")

    search = sub.add_parser("search", help="top-K catalogue products for a query image")
    common(search)
    search.add_argument("--query", required=True, help="query image file or http(s) URL of a photo")
    search.add_argument("--out", default=None, help="write the result grid to this PNG")

    evaluate = sub.add_parser("evaluate", help="leave-one-out precision@K and MAP@K over the catalogue")
    common(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    evaluate.add_argument("--half", default="all", choices=("all", "tuning", "report"),
                          help="evaluate on the products with even ids (tuning) or odd ids (report) only")

    engine = sub.add_parser("engine", help="build a saved engine once, follow the catalogue (add, remove), "
                                           "describe it; search and evaluate take --engine DIR")
    actions = engine.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="index a catalogue and save the engine in --out")
    catalogue_options(build)
    build_options(build)
    build.add_argument("--out", required=True, metavar="DIR", help="the folder to save the engine in")
    add = actions.add_parser("add", help="add the catalogue's new products and update the changed ones")
    add.add_argument("folder", metavar="DIR", help="a saved engine")
    catalogue_options(add)
    index_uri(add)
    remove = actions.add_parser("remove", help="remove products by id")
    remove.add_argument("folder", metavar="DIR", help="a saved engine")
    remove.add_argument("--ids", nargs="+", default=[], metavar="ID", help="product ids to remove")
    remove.add_argument("--ids-from", default=None, metavar="FILE", help="a text file of product ids, one a line")
    index_uri(remove)
    info = actions.add_parser("info", help="products, recipe, index and changes since the fit")
    info.add_argument("folder", metavar="DIR", help="a saved engine")
    info.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    index_uri(info)

    train = sub.add_parser("train", help="fine-tune a backbone's last blocks and an embedding on the catalogue's "
                                         "categories (metric learning); saves a trained model folder")
    catalogue_options(train)
    train.set_defaults(backbone=OFFLINE_BACKBONE)
    train.add_argument("--out", default=None,
                       help="the folder of the trained model and its checkpoint (default: CATALOGUE-BACKBONE-LOSS "
                            "in the cache's trained/ folder, which the explorer's recipe menu lists)")
    train.add_argument("--loss", default="proxy-anchor", help=" or ".join(LOSS_NAMES))
    train.add_argument("--epochs", type=_bounded(1), default=None, help="most epochs (early stopping may end sooner)")
    train.add_argument("--resume", action="store_true", help="carry on from the checkpoint in --out")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the trained model or checkpoint in --out (whole, once the new one is)")
    train.add_argument("--preset", default="auto", choices=("auto", "cpu", "gpu"),
                       help="settings sized for this machine (auto), a CPU or a GPU")
    train.add_argument("--protocol", default="none",
                       help=f"{' | '.join(PROTOCOL_NAMES)}: train on one side only and report the other, next "
                            "to the frozen backbone and a projection head (new-types: trained on half the "
                            "categories, searched on a catalogue that also holds the other half)")
    train.add_argument("--embedding-dim", type=_bounded(*EMBEDDING_DIM_RANGE), default=None)
    train.add_argument("--trainable-blocks", type=_bounded(0), default=None,
                       help="backbone blocks fine-tuned (0: none)")
    train.add_argument("--image-size", type=_bounded(*INPUT_SIZE_RANGE), default=None,
                       help="input pixels (default: the backbone's)")
    train.add_argument("--learning-rate", type=_learning_rate, default=None,
                       help="the embedding layer's (the backbone's and proxies' follow it; default 1e-3)")
    train.add_argument("--seed", type=_bounded(*SEED_RANGE), default=0)
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _catalogue(args):
    from .data.loaders import load_catalogue

    word = str(args.catalogue).strip()
    if word.lower() not in CATALOGUE_WORDS and Path(word).expanduser().is_file():
        raise CLIError(f"--catalogue {args.catalogue} is a file: give the catalogue's folder (the one holding "
                       "styles.csv and images/, the Farfetch listings CSV, or folders of photos), or one of "
                       f"{', '.join(CATALOGUE_WORDS)}")
    try:
        catalogue = load_catalogue(args.catalogue, args.format, photos=args.photos or FARFETCH_PHOTOS[0])
    except (FileNotFoundError, ValueError) as error:
        raise CLIError(f"--catalogue {args.catalogue} --format {args.format}: {error}") from None
    except OSError as error:  # a folder that cannot be listed or read
        raise CLIError(f"--catalogue {args.catalogue}: {error.strerror or error} ({error.filename or word})") from None
    if args.photos is not None and not catalogue.name.startswith("farfetch-"):
        raise CLIError(f"--photos {args.photos} applies only to Farfetch listings, and --catalogue {args.catalogue} "
                       f"is a {catalogue.name!r} catalogue with one photo per product: leave --photos out")
    if args.limit is not None:
        limited = catalogue.stratified_sample(args.limit)
        if len(limited) != args.limit:
            why = (f"the catalogue has {len(catalogue)}" if len(limited) == len(catalogue) else
                   f"at least 2 of each of its {catalogue.table['category'].nunique()} categories are kept, "
                   "the rest in proportion")
            print(f"--limit {args.limit}: {len(limited)} products used ({why})")
        catalogue = limited
    if len(catalogue) == 0:
        raise CLIError(f"--catalogue {args.catalogue}: no images found (format {args.format!r})")
    return catalogue


def _saved_engine(folder: str, args):
    """The engine saved in ``folder`` (``--index-uri`` for a Milvus one); CLIError naming the folder otherwise."""
    from .search.engine import SearchEngine

    try:
        return SearchEngine.load(Path(folder).expanduser(), index_uri=args.index_uri)
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise CLIError(f"{folder}: {str(error).strip(chr(39))}") from None
    except ImportError as error:
        raise CLIError(f"{folder}: {error}") from None


def _engine_or_catalogue(args):
    """``(engine, catalogue)``: the saved engine of ``--engine`` (catalogue None), else the catalogue to build
    one from (engine None)."""
    if args.engine is None:
        return None, _catalogue(args)
    given = [f"--{name.replace('_', '-')}" for name, default in CATALOGUE_DEFAULTS.items()
             if getattr(args, name) != default]
    if given:
        raise CLIError(f"--engine {args.engine} searches a saved engine, which has its own catalogue, recipe and "
                       f"index: leave out {', '.join(given)}")
    return _saved_engine(args.engine, args), None


def _engine(catalogue, args, progress=True):
    from .data.images import resize_from_word
    from .models.weights import weights_from_word
    from .search.engine import SearchEngine

    weights = weights_from_word(args.weights, "--weights")
    recipe = _recipe(args)
    if recipe.embedding.trained and args.weights != "imagenet":
        raise CLIError(f"--weights {args.weights}: the trained model in {recipe.embedding.trained} (--recipe) brings "
                       "its own weights; leave --weights out")
    if args.index not in SEARCH_BACKENDS:
        raise CLIError(f"--index {args.index!r} is not supported; use one of: {', '.join(SEARCH_BACKENDS)}")
    if args.index_uri and args.index != "milvus":
        raise CLIError(f"--index-uri is for --index milvus, not --index {args.index}")
    options = {"uri": args.index_uri} if args.index_uri else {}
    try:
        resize = args.resize or (None if recipe.embedding.trained else "squash")  # a trained model has its own
        return SearchEngine.build(catalogue, args.backbone, weights, cache=not args.no_cache, progress=progress,
                                  recipe=recipe, index=args.index, index_options=options,
                                  **({"resize": resize_from_word(resize, "--resize")} if resize else {}))
    except ImportError as error:
        raise CLIError(f"--index {args.index}: {error}") from None


def _recipe(args):
    from .search.recipes import recipe_from_word

    try:
        return recipe_from_word(args.recipe)
    except ValueError as error:
        raise CLIError(f"--recipe: {error}") from None


def _query_image(query: str):
    """The ``--query`` to search with: a file path as given (checked now, before any indexing), or the
    bytes of the photo at a URL (fetched now, with a deadline, a size cap and a check that it is an
    image: errors name the URL, without its password)."""
    from .data.remote import is_url, photo_from_url

    if not is_url(query):
        if not Path(query).expanduser().is_file():
            raise CLIError(f"--query {query}: no such file; give an image file or an http(s) address of a photo")
        return query
    return photo_from_url(query)


def _print_results(results) -> None:
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_colwidth", 40):
        print(results[["rank", "brand", "description", "price", "category", "distance"]].to_string(index=False))


def _grid_path(out: str) -> Path:
    """Where ``--out`` writes the result grid, checked before any indexing: ``.png`` added to a name without
    a suffix; a folder, a path through a file or a file type matplotlib cannot write is refused."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(out).expanduser()
    if path.is_dir():
        raise CLIError(f"--out {out} is a folder: give the file to write, such as {Path(out) / 'grid.png'}")
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise CLIError(f"--out {out}: {path.suffix} is not an image type matplotlib writes; end the name with .png "
                       f"(or one of {', '.join('.' + f for f in sorted(formats) if f != 'png')})")
    if path.is_dir():
        raise CLIError(f"--out {out}: {path} is a folder: give another file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CLIError(f"--out {out}: {parent} is a file, not a folder")
            break
    return path.resolve()


def _write_grid(query, results, path: Path, title) -> Path:
    """Write the result grid to ``path`` (from :func:`_grid_path`); returns it."""
    from .ui.plotting import results_figure

    path.parent.mkdir(parents=True, exist_ok=True)
    results_figure(query, results, title=title).savefig(path, dpi=110)
    return path


def run_demo(args) -> None:
    import numpy as np

    from .data.loaders import load_catalogue
    from .data.remote import shown_url
    from .evaluation.metrics import evaluate
    from .models.features import available_extractor
    from .search.engine import SearchEngine

    query_image = _query_image(args.query) if args.query else None  # a bad URL fails before any indexing
    grid = _grid_path(args.out)
    catalogue = load_catalogue("sample")
    print(catalogue)
    recipe = _recipe(args)
    backbone = (None if recipe.embedding.trained
                else available_extractor(args.backbone, "imagenet", fallback=OFFLINE_BACKBONE))
    engine = SearchEngine.build(catalogue, backbone, recipe=recipe)
    print(engine)
    print(engine.extraction.report())
    if args.query:
        query, title = query_image, f"query: {shown_url(args.query)}"
        results = engine.search(query, args.k)
    else:
        table = engine.catalogue.table
        row = int(np.flatnonzero(table["category"] == table["category"].mode().iloc[0])[0])
        query, title = table["path"].iloc[row], f"catalogue product {table['id'].iloc[row]} (left out of its results)"
        results = engine.search(row, args.k)
    print(f"\nTop {args.k} for {title}")
    _print_results(results)
    scores = evaluate(engine, k=args.k)
    overall = scores.iloc[0]
    print(f"\nMAP@{args.k} = {overall.map_at_k:.3f}, P@{args.k} = {overall.precision_at_k:.3f} "
          f"(leave-one-out over {overall.n_queries} queries, {engine.extractor.backbone})")
    path = _write_grid(query, results, grid, f"{engine.extractor.backbone}: {title}")
    print(f"Result grid written to {path}")


def run_search(args) -> None:
    from .data.remote import shown_url

    query = _query_image(args.query)  # a bad URL fails before any indexing
    grid = _grid_path(args.out) if args.out else None
    engine, catalogue = _engine_or_catalogue(args)
    engine = engine or _engine(catalogue, args)
    if engine.extraction is not None and engine.extraction.skipped:
        print(engine.extraction.report())
    results = engine.search(query, args.k)
    print(f"Top {args.k} of {len(engine)} products for {shown_url(args.query)} ({engine.extractor})")
    _print_results(results)
    if grid:
        print(f"Result grid written to {_write_grid(query, results, grid, engine.extractor.backbone)}")


def run_evaluate(args) -> None:
    from .evaluation.metrics import evaluate
    from .models.weights import weights_word

    report_to = sys.stderr if args.json else sys.stdout
    with contextlib.redirect_stdout(report_to):
        engine, catalogue = _engine_or_catalogue(args)
        if engine is not None and args.half != "all":
            raise CLIError(f"--half {args.half}: evaluates an engine built on half the catalogue; build it "
                           "without --engine")
        if engine is None:
            if args.half != "all":
                from .evaluation.reports import halves

                catalogue = halves(catalogue)[args.half == "report"]
            engine = _engine(catalogue, args)
    scores = evaluate(engine, k=args.k)
    if not len(scores):  # the same refusal, and nothing on stdout, with --json
        if not args.json and engine.extraction is not None:
            print(engine.extraction.report())
        raise CLIError(f"no category has 2 or more products among the {len(engine)} images: nothing to evaluate "
                       "(each query needs another product of its category to find)")
    skipped = [] if engine.extraction is None else [{"file": s.path, "reason": s.reason}
                                                    for s in engine.extraction.skipped]
    if args.json:
        overall = scores.iloc[0]
        print(json.dumps({
            "backbone": engine.extractor.backbone,
            "weights": weights_word(engine.extractor.weights),
            "recipe": engine.recipe.name, "steps": engine.recipe.steps(), "half": args.half,
            "k": args.k, "n_images": len(engine), "n_queries": int(overall.n_queries),
            "map_at_k": float(overall.map_at_k), "precision_at_k": float(overall.precision_at_k),
            "per_category": {r.category: {"n_queries": int(r.n_queries), "map_at_k": float(r.map_at_k),
                                          "precision_at_k": float(r.precision_at_k)}
                             for r in scores.iloc[1:].itertuples()},
            "skipped": skipped, "engine": args.engine,
        }, indent=2))
        return
    if engine.extraction is not None:
        print(engine.extraction.report())
    overall = scores.iloc[0]
    print(f"recipe {engine.recipe.name}: {', '.join(engine.recipe.steps()) or 'no extra step'}")
    print(f"{engine.extractor}\nMAP@{args.k} = {overall.map_at_k:.4f}   P@{args.k} = {overall.precision_at_k:.4f}"
          f"   ({int(overall.n_queries)} queries over {len(engine)} images)\n")
    print(scores.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _replaced_collection(folder: Path, engine):
    """The Milvus index of the engine saved in ``folder`` that ``engine`` (a new build, to be saved there) will
    replace, when both keep their rows in the same Milvus database under different collections; else None."""
    from .search.backends import load_index

    config = folder / "index" / "index.json"
    if engine.index.name != "milvus" or not config.is_file():
        return None
    saved = json.loads(config.read_text())
    if saved.get("index") != "milvus" or saved.get("uri") != engine.index.uri or \
            saved.get("collection") == engine.index.collection:
        return None
    try:
        return load_index(folder / "index", uri=engine.index.uri)
    except (ValueError, FileNotFoundError):  # changed or gone already: nothing of ours to drop
        return None


def run_engine(args) -> None:
    """``engine build | add | remove | info``: each a new process, as a shop's nightly job runs them."""
    if args.action == "build":
        engine = _engine(_catalogue(args), args)
        print(engine.extraction.report())
        replaced = _replaced_collection(Path(args.out), engine)
        folder = engine.save(Path(args.out))
        if replaced is not None:
            replaced.drop()
            print(f"Milvus collection {replaced.collection!r} of the engine replaced in {folder} dropped")
        print(f"engine of {len(engine):,} products ({engine.recipe.name}, index {engine.index.name}) saved in {folder}")
        return
    if args.action == "info":
        info = {"folder": str(Path(args.folder).expanduser().resolve()), **_saved_engine(args.folder, args).info()}
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            print("\n".join(f"{key}: {value}" for key, value in info.items()))
        return
    if args.action == "add":
        ignored = [f"--{name}" for name in ("backbone", "weights", "resize", "k")
                   if getattr(args, name) != CATALOGUE_DEFAULTS.get(name, 10)]
        if ignored:
            raise CLIError(f"engine add runs the saved engine's own pipeline: leave out {', '.join(ignored)}")
        catalogue = _catalogue(args)  # a bad --catalogue fails before the engine is opened
        engine = _saved_engine(args.folder, args)
        counts = engine.add(catalogue, cache=not args.no_cache, progress=True)
        if counts["skipped"]:
            print(engine.extraction.report())
        engine.save(Path(args.folder))
        print(f"added {counts['added']:,}, updated {counts['updated']:,} (unchanged {counts['unchanged']:,}, "
              f"skipped {counts['skipped']:,}): {len(engine):,} products, {engine.changes:,} changes since the fit")
        return
    ids = list(args.ids)
    if args.ids_from:
        path = Path(args.ids_from).expanduser()
        if not path.is_file():
            raise CLIError(f"--ids-from {args.ids_from}: no such file; give a text file of product ids, one a line")
        ids += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise CLIError("engine remove: give the product ids to remove (--ids ID [ID ...] or --ids-from FILE)")
    engine = _saved_engine(args.folder, args)
    try:
        removed = engine.remove(ids)
    except KeyError as error:
        raise CLIError(f"{args.folder}: {str(error).strip(chr(39))}") from None
    engine.save(Path(args.folder))
    print(f"removed {removed:,}: {len(engine):,} products, {engine.changes:,} changes since the fit")


def run_train(args) -> None:
    from dataclasses import replace

    from .data.images import resize_from_word
    from .models.weights import weights_from_word, weights_word
    from .training.output_folder import OutputFolderError
    from .training.trainer import TrainingSettings, train

    if args.loss.strip().lower().replace("_", "-") not in LOSS_NAMES:
        raise CLIError(f"--loss {args.loss!r} is not supported; use one of: {', '.join(LOSS_NAMES)}")
    if args.protocol not in PROTOCOL_NAMES:
        raise CLIError(f"--protocol {args.protocol!r} is not supported; use one of: {', '.join(PROTOCOL_NAMES)}")
    if args.resume and args.overwrite:
        raise CLIError("--resume carries on from the checkpoint in --out, --overwrite replaces it: choose one")
    weights = weights_word(weights_from_word(args.weights, "--weights"))
    preset = {"auto": TrainingSettings.for_this_machine, "cpu": TrainingSettings.cpu,
              "gpu": TrainingSettings}[args.preset]()
    changes = {"backbone": args.backbone, "weights": weights, "loss": args.loss, "k": args.k, "seed": args.seed,
               "resize": args.resize and resize_from_word(args.resize, "--resize"), "epochs": args.epochs,
               "embedding_dim": args.embedding_dim, "trainable_blocks": args.trainable_blocks,
               "image_size": args.image_size, "learning_rate": args.learning_rate}
    settings = replace(preset, **{key: value for key, value in changes.items() if value is not None})
    catalogue = _catalogue(args)
    split = None
    if args.protocol != "none":
        from .training.protocols import new_types_split, unseen_categories_split, unseen_products_split

        try:
            split = {"unseen-products": unseen_products_split, "unseen-categories": unseen_categories_split,
                     "new-types": new_types_split}[args.protocol](catalogue.labels, seed=args.seed)
        except ValueError as error:
            raise CLIError(f"--protocol {args.protocol}: {error}") from None
        print(split)
    training = catalogue if split is None else catalogue.subset(split.train)
    if (training.labels != "").sum() == 0:
        raise CLIError(f"--catalogue {args.catalogue}: no product has a category: training needs labels")
    option = "--out"
    if args.out is None:
        from .models.trained import default_trained_folder

        args.out = str(default_trained_folder(catalogue.name, settings.backbone, settings.loss))
        option = "--out (default)"
    try:
        result = train(training, args.out, settings, resume=args.resume, overwrite=args.overwrite,
                       progress=not args.no_progress)
    except OutputFolderError as error:
        raise CLIError(f"{option} {error}") from None
    for line in result.skipped:
        print(f"  skipped {line}")
    print(f"best epoch {result.best_epoch} of {len(result.history)}: validation MAP@{settings.k} "
          f"{result.best_val_map:.4f} (frozen {settings.backbone} features: {result.frozen_val_map:.4f})"
          f"{' (stopped early)' if result.stopped_early else ''}")
    if result.refit:
        print(f"no epoch beat the probe clearly on validation: the probe, fitted again on all {result.refit} photos "
              "of the training side, is the trained model")
    mixing = result.mixing
    print(f"fused with the frozen features, weight {mixing['weight']:g}: " + (
        f"chosen on {len(mixing['held_out_categories'])} categories held out of training "
        f"({', '.join(mixing['held_out_categories'])})" if "curve" in mixing else mixing.get("reason", "")))
    print(f"Trained model written to {Path(args.out).expanduser().resolve()}")
    if split is not None:
        from .training.report import protocol_report

        report = protocol_report(catalogue, split, args.out, backbone=settings.backbone, k=settings.k,
                                 cache=not args.no_cache, seed=args.seed, progress=not args.no_progress)
        (Path(args.out) / "report.json").write_text(report.to_json(orient="records", indent=1) + "\n")
        print(report.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    from .models.backbones import WeightsUnavailableError
    from .data.images import ImageError
    from .training.output_folder import OutputWriteError

    try:
        {"demo": run_demo, "search": run_search, "evaluate": run_evaluate, "train": run_train,
         "engine": run_engine}[args.command](args)
    except (CLIError, ValueError, FileNotFoundError, ImageError, WeightsUnavailableError, RuntimeError,
            OutputWriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
