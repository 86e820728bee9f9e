"""The search explorer in ipywidgets: controls wired to the browser-free explorer (:mod:`~cbir_tutorial.ui.shelf`,
:mod:`~cbir_tutorial.ui.query`, :mod:`~cbir_tutorial.ui.answer`, :mod:`~cbir_tutorial.ui.views`), nothing more.

    from cbir_tutorial import SearchExplorer
    SearchExplorer(catalogue, backbones={"efficientnet_lite0": "imagenet", "resnet50": None}, k=10)

Works in JupyterLab 4, Notebook 7, Colab and Kaggle with ipywidgets 7.7 or 8 (no front-end extension
to build); the few differences between the two are kept in :mod:`cbir_tutorial.ui.widget_compat`.
"""

from __future__ import annotations

import contextlib
import html
import time
from pathlib import Path
from typing import Sequence

import ipywidgets as w
import numpy as np
import pandas as pd

from ..models.backbones import WeightsUnavailableError
from ..models.trained import TrainedModelError
from ..data.catalogue import Catalogue
from ..search.engine import RESULT_COLUMNS, SearchEngine
from ..search.recipes import RECIPES, trained_recipe_choices
from ..search.filters import ALL, Filters, filter_choices
from .answer import Answer, answer_for
from .query import Query
from .shelf import EngineShelf, offered_choices
from .views import comparison_html, explorer_html, query_html, results_html
from ..data.images import ImageError
from ..data.remote import URL_MAX_BYTES, URL_TIMEOUT_S
from .widget_compat import clear_upload, uploaded_files, widget_bundle

K_MAX = 50


class SearchExplorer:
    """Pick a backbone, a recipe and a query (catalogue product, random product, your own photo or a
    photo's web address), see the top K.

    ``backbones``: what to offer (see :func:`~cbir_tutorial.ui.shelf.offered_choices`), e.g.
    ``{"efficientnet_lite0": "imagenet", "resnet50": None}`` (``None`` = random weights). Each engine is
    built the first time its backbone is chosen (features from the disk cache when extracted before)
    and kept, so switching back is instant; a backbone whose weights cannot be had is marked
    unavailable. ``row``: the first query (``None``: a random product drawn with ``seed``).

    ``recipe`` (a name from :data:`~cbir_tutorial.search.recipes.RECIPES`, e.g. ``"best"``, or a trained
    model's folder): the steps engines are built with; the *recipe* dropdown switches it, building each
    engine once. The dropdown also offers the trained models in the cache (``python -m cbir_tutorial train``
    without ``--out``) and in ``trained`` (folders of trained models, or folders holding them), as
    "folder: loss, backbone"; a trained model brings its own backbone. One that cannot be used (a broken
    ``trained.json``, unreadable weights) is listed as "folder: broken: why"; choosing it says why in the
    status line and keeps the recipe shown before.

    State for code and tests: ``backbone`` (choice key), ``query``, ``answer``, ``results``
    (DataFrame), ``comparison``, ``message`` and ``controls`` (name → widget; set a control's
    ``.value`` and the results follow).

    A photo URL is fetched with a ``url_timeout_s`` timeout and a ``url_max_bytes`` size cap (attributes;
    set them on an instance to change them).
    """

    url_timeout_s: float = URL_TIMEOUT_S
    url_max_bytes: int = URL_MAX_BYTES
    #: A click on the URL button within this many seconds of the box fetching the same address is the
    #: click that committed the text (the box fetches when it loses focus): it is not fetched twice.
    url_repeat_s: float = 1.0

    def __init__(self, catalogue: Catalogue, backbones=None, k: int = 10, *, row: int | None = None,
                 seed: int = 0, progress: bool = True, cache=True, recipe="baseline", trained=(),
                 **extractor_options):
        shelf = EngineShelf(catalogue, offered_choices(backbones), cache=cache, recipe=recipe, **extractor_options)
        self._start(shelf, k, row, seed, progress, trained)

    @classmethod
    def from_shelf(cls, shelf: EngineShelf, k: int = 10, *, row: int | None = None, seed: int = 0,
                   progress: bool = True, trained=()) -> "SearchExplorer":
        """An explorer over an :class:`~cbir_tutorial.ui.shelf.EngineShelf` (its built engines are reused)."""
        self = cls.__new__(cls)
        self._start(shelf, k, row, seed, progress, trained)
        return self

    @classmethod
    def from_engines(cls, engines: Sequence[SearchEngine], k: int = 10, **options) -> "SearchExplorer":
        """An explorer over engines already built on one catalogue (e.g. in an earlier notebook)."""
        engines = list(engines)
        if not engines:
            raise ValueError("from_engines needs at least one SearchEngine")
        shelf = EngineShelf(engines[0].catalogue, [])
        for engine in engines:
            if not engine.catalogue.table["id"].equals(shelf.catalogue.table["id"]):
                raise ValueError("the engines index different products; build them on one catalogue")
            shelf.add(engine.extractor.choice, engine)
        return cls.from_shelf(shelf, k, **options)

    @classmethod
    def from_saved(cls, folder, k: int = 10, *, index_uri: str | None = None, **options) -> "SearchExplorer":
        """An explorer over the engine saved in ``folder`` (``SearchEngine.save`` or ``python -m cbir_tutorial
        engine build``), reopened without extracting the catalogue again; ``index_uri``: a Milvus engine's
        database (see :meth:`~cbir_tutorial.search.engine.SearchEngine.load`)."""
        return cls.from_engines([SearchEngine.load(folder, index_uri=index_uri)], k, **options)

    def _start(self, shelf: EngineShelf, k: int, row: int | None, seed: int, progress: bool, trained=()):
        self.shelf = shelf
        self.catalogue = shelf.catalogue
        self.progress = progress
        self._rng = np.random.default_rng(seed)
        self._quiet = False
        self._built_in = 0.0
        self._answer: Answer | None = None
        self._comparison: dict[str, Answer | str] = {}
        self._last_url: tuple[str, float] = ("", float("-inf"))  # address fetched last, and when
        row = int(self._rng.integers(len(self.catalogue))) if row is None else int(row)
        self._query = Query.from_row(self.catalogue, row)
        # the named recipes, the trained models found, and the shelf's own; by Recipe.key
        found, broken = trained_recipe_choices(trained)
        self._recipes = {r.key: r for r in [*RECIPES.values(), *found, shelf.recipe]}
        # trained-model folders that cannot be used: folder → why, in one line
        self._broken = {key: reason for key, reason in broken.items() if key not in self._recipes}
        self.controls = self._controls(int(k), row)
        self.widget = self._layout()
        for key in shelf.choices:  # start on the first backbone that can be built
            try:
                shelf.engine(key, progress=progress)
            except WeightsUnavailableError:
                continue
            with self._quietly():
                self.controls["backbone"].value = key
            break
        self._relabel()
        if shelf.built:
            self._refresh()
        else:
            self._say("No backbone could be loaded:<br>" + "<br>".join(
                f"{html.escape(key)}: {html.escape(message.splitlines()[0])}"
                for key, message in shelf.unavailable.items()), error=True)
        self._wire()

    # ---------------------------------------------------------------------------------------------
    # State

    @property
    def backbone(self) -> str:
        """The choice key of the backbone shown (``"resnet50:random"``)."""
        return self.controls["backbone"].value

    @property
    def query(self) -> Query:
        return self._query

    @property
    def answer(self) -> Answer | None:
        return self._answer

    @property
    def results(self) -> pd.DataFrame:
        """The results shown (rank, id, brand, description, price, category, distance, path, row)."""
        return self._answer.results if self._answer is not None else pd.DataFrame(columns=RESULT_COLUMNS)

    @property
    def comparison(self) -> dict[str, pd.DataFrame]:
        """Compare mode: choice key → results of every backbone that could answer."""
        return {key: a.results for key, a in self._comparison.items() if isinstance(a, Answer)}

    @property
    def filters(self) -> Filters:
        c = self.controls
        price = None
        if "price" in c:
            low, high = c["price"].value
            if low > c["price"].min or high < c["price"].max:
                price = (float(low), float(high))
        return Filters(c["gender"].value if "gender" in c else ALL,
                       c["category"].value if "category" in c else ALL, price)

    @property
    def message(self) -> str:
        """The status line's text (HTML)."""
        return self.controls["status"].value

    def show(self) -> None:
        """Display the explorer in the notebook."""
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs):
        return {**widget_bundle(self.widget, **kwargs), "text/html": self.still_html()}

    def still_html(self) -> str:
        """The explorer as it stands, as still HTML (its settings, status, query and results): what a notebook
        viewer without a kernel shows (the course site, GitHub), while Jupyter shows the live widgets."""
        shown = {}
        for name in ("backbone", "recipe", "compare", "query", "k", "gender", "category", "price"):
            control = self.controls.get(name)
            if control is None:
                continue
            value = control.value
            if isinstance(control, w.Dropdown):
                value = control.label
            elif isinstance(control, w.Checkbox):
                value = "on" if value else "off"
            elif isinstance(value, tuple):
                value = " to ".join(f"{v:,.0f}" for v in value)
            shown[control.description or name] = str(value)
        c = self.controls
        return explorer_html(shown, c["status"].value, c["query_view"].value, c["results_view"].value)

    # ---------------------------------------------------------------------------------------------
    # Controls

    def _controls(self, k: int, row: int) -> dict[str, w.Widget]:
        wide = {"description_width": "initial"}
        choices = filter_choices(self.catalogue)
        c: dict[str, w.Widget] = {
            "backbone": w.Dropdown(options=[(o.label, o.key) for o in self.shelf.choices.values()],
                                   description="backbone", style=wide, layout=w.Layout(width="440px")),
            "recipe": w.Dropdown(options=self._recipe_options(), value=self.shelf.recipe_key, description="recipe",
                                 style=wide, layout=w.Layout(width="440px")),
            "compare": w.Checkbox(value=False, description="compare backbones", indent=False),
            "query": w.IntSlider(value=row, min=0, max=len(self.catalogue) - 1, description="product",
                                 continuous_update=False, layout=w.Layout(width="420px")),
            "random": w.Button(description="random", icon="random", tooltip="a random catalogue product"),
            "upload": w.FileUpload(accept="image/*", multiple=False, description="your photo"),
            "url": w.Text(value="", placeholder="https://... the address of a photo (Enter to search)",
                          description="photo URL", continuous_update=False, style=wide,
                          layout=w.Layout(width="440px")),
            "fetch": w.Button(description="search URL", icon="link", tooltip="fetch the photo at this address"),
            "k": w.IntSlider(value=max(1, min(k, K_MAX)), min=1, max=K_MAX, description="K",
                             continuous_update=False),
        }
        if choices.genders:
            c["gender"] = w.Dropdown(options=[ALL, *choices.genders], description="gender")
        if choices.categories:
            c["category"] = w.Dropdown(options=[ALL, *choices.categories], description="category")
        if choices.price_range:
            low, high = choices.price_range
            c["price"] = w.FloatRangeSlider(value=(low, high), min=low, max=high, step=max((high - low) / 500, 0.01),
                                            description="price", readout_format=",.0f",
                                            continuous_update=False, layout=w.Layout(width="420px"))
        c["status"] = w.HTML()
        c["progress"] = w.Output()
        c["query_view"] = w.HTML(layout=w.Layout(min_width="210px"))
        c["results_view"] = w.HTML(layout=w.Layout(flex="1 1 auto"))
        c["log"] = w.Output()
        return c

    def _layout(self) -> w.VBox:
        c = self.controls
        wrap = w.Layout(flex_flow="row wrap", align_items="center")
        filters = [c[name] for name in ("k", "gender", "category", "price") if name in c]
        return w.VBox([
            w.HBox([c["backbone"], c["compare"]], layout=wrap),
            c["recipe"],
            w.HBox([c["query"], c["random"], c["upload"]], layout=wrap),
            w.HBox([c["url"], c["fetch"]], layout=wrap),
            w.HBox(filters, layout=wrap),
            c["status"], c["progress"],
            w.HBox([c["query_view"], c["results_view"]], layout=w.Layout(align_items="flex-start")),
            c["log"],
        ], layout=w.Layout(width="100%"))

    def _wire(self):
        """Observe the controls; every callback's unexpected error is shown in the ``log`` Output."""
        shown = self.controls["log"].capture(clear_output=True)
        handlers = {"backbone": self._on_backbone, "recipe": self._on_recipe, "query": self._on_row,
                    "upload": self._on_upload, "url": self._on_url, "compare": self._on_change, "k": self._on_change,
                    "gender": self._on_change, "category": self._on_change, "price": self._on_change}
        for name, handler in handlers.items():
            if name in self.controls:
                self.controls[name].observe(shown(handler), names="value")
        self.controls["random"].on_click(shown(self._on_random))
        self.controls["fetch"].on_click(shown(self._on_fetch))

    @contextlib.contextmanager
    def _quietly(self):
        """Change controls from code without triggering their callbacks."""
        self._quiet, before = True, self._quiet
        try:
            yield
        finally:
            self._quiet = before

    def _say(self, text: str, error: bool = False):
        colour = "#c62828" if error else "#555"
        self.controls["status"].value = f'<div class="cbir-status" style="color:{colour}">{text}</div>'

    def _relabel(self):
        """Dropdown labels, with unavailable backbones marked."""
        dropdown = self.controls["backbone"]
        labels = [(o.label + ("  [unavailable]" if key in self.shelf.unavailable else ""), key)
                  for key, o in self.shelf.choices.items()]
        if list(dropdown.options) != labels:
            with self._quietly():
                value = dropdown.value
                dropdown.options = labels
                dropdown.value = value

    def _recipe_options(self) -> list[tuple[str, str]]:
        """The recipe dropdown's ``(label, key)``: the recipes, then the trained models that cannot be used."""
        return ([(f"{recipe.name}: {recipe.description}", key) for key, recipe in self._recipes.items()]
                + [(f"{Path(key).name}: broken: {reason}", key) for key, reason in self._broken.items()])

    def _refuse_recipe(self, back_to: str, name: str, reason: str):
        """The recipe dropdown back on ``back_to`` (the shelf's recipe); the status says why trained model
        ``name`` cannot be used."""
        dropdown = self.controls["recipe"]
        with self._quietly():
            if list(dropdown.options) != self._recipe_options():
                dropdown.options = self._recipe_options()
            dropdown.value = back_to
        self._say(f"<b>Trained model {html.escape(name)} cannot be used</b>: {html.escape(reason)}; still showing "
                  f"{html.escape(self.shelf.recipe_name)}", error=True)

    # ---------------------------------------------------------------------------------------------
    # Callbacks

    def _on_backbone(self, change):
        if self._quiet:
            return
        try:
            self._refresh()
        except WeightsUnavailableError as error:
            self._relabel()
            with self._quietly():
                self.controls["backbone"].value = change["old"]
            choice = self.shelf.choices[change["new"]]
            self._say(f"<b>{html.escape(choice.label)} is unavailable</b>; still showing "
                      f"{html.escape(self.shelf.choices[change['old']].label)}.<pre style='white-space:pre-wrap'>"
                      f"{html.escape(str(error))}</pre>", error=True)

    def _on_recipe(self, change):
        if self._quiet:
            return
        if change["new"] in self._broken:
            return self._refuse_recipe(change["old"], Path(change["new"]).name, self._broken[change["new"]])
        chosen = self._recipes[change["new"]]
        self.shelf.recipe = chosen
        try:
            self._refresh()
        except (WeightsUnavailableError, ImageError, OSError, ValueError) as error:
            self.shelf.recipe = self._recipes[change["old"]]
            if isinstance(error, TrainedModelError) and chosen.embedding.trained:  # broke since it was listed
                del self._recipes[change["new"]]
                self._broken[change["new"]] = error.reason
                return self._refuse_recipe(change["old"], chosen.name, error.reason)
            with self._quietly():
                self.controls["recipe"].value = change["old"]
            self._say(f"<b>Recipe {html.escape(self._recipes[change['new']].name)} failed</b>; still showing "
                      f"{html.escape(self.shelf.recipe_name)}: {html.escape(str(error).splitlines()[0])}", error=True)

    def _on_row(self, change):
        if self._quiet:
            return
        self._update(Query.from_row(self.catalogue, change["new"]))

    def _on_random(self, _button=None):
        n, current = len(self.catalogue), self.controls["query"].value
        if n == 1:
            return self._on_row({"new": 0})
        row = int(self._rng.integers(n - 1))
        self.controls["query"].value = row + (row >= current)  # never the current product

    def _on_upload(self, change):
        files = uploaded_files(change["new"])
        if self._quiet or not files:
            return
        try:
            query = Query.from_upload(files[0].content, files[0].name)
        except ImageError as error:
            self._say(f"<b>That upload cannot be used</b>: {html.escape(str(error))}. "
                      "Try a JPEG or PNG photo; the explorer still shows the previous query.", error=True)
            return
        finally:
            with self._quietly():  # so that the same file can be uploaded again
                clear_upload(self.controls["upload"])
        self._update(query)

    def _on_url(self, change):
        if not self._quiet and change["new"].strip():
            self._fetch(change["new"].strip())

    def _on_fetch(self, _button=None):
        url = self.controls["url"].value.strip()
        if not url:
            self._say("Paste the address of a photo in the <i>photo URL</i> box first.", error=True)
            return
        fetched, when = self._last_url
        if url == fetched and time.monotonic() - when < self.url_repeat_s:
            return  # the box fetched it a moment ago, when this click took the focus away from it
        self._fetch(url)

    def _fetch(self, url: str):
        """The photo at ``url`` becomes the query; a bad address is said in words, the query stays."""
        self._say(f"⏳ Fetching {html.escape(url)}…")
        try:
            query = Query.from_url(url, timeout_s=self.url_timeout_s, max_bytes=self.url_max_bytes)
        except ImageError as error:
            self._say(f"<b>That URL cannot be used</b>: {html.escape(str(error))}. Paste the address of a "
                      "JPEG or PNG photo (right-click a photo, <i>Copy image address</i>); the explorer still "
                      "shows the previous query.", error=True)
            return
        finally:
            self._last_url = (url, time.monotonic())
        self._update(query)

    def _on_change(self, _change):
        if not self._quiet:
            self._update()

    def _update(self, query: Query | None = None):
        """:meth:`_refresh`, with the expected failures (no weights, unreadable product photo) said in words."""
        try:
            self._refresh(query)
        except (WeightsUnavailableError, ImageError) as error:
            self._say(html.escape(str(error).splitlines()[0]), error=True)

    # ---------------------------------------------------------------------------------------------
    # Searching and showing

    def _search(self, key: str, query: Query) -> Answer:
        """One search, building the backbone's engine first (with a progress bar) if needed."""
        if key in self.shelf.built:
            return answer_for(self.shelf, key, query, self.controls["k"].value, self.filters)
        choice = self.shelf.choices[key]
        self._say(f"⏳ Loading {html.escape(choice.label)} and computing the features of "
                  f"{len(self.catalogue):,} products (first time only, then cached)…")
        progress = self.controls["progress"]
        started = time.perf_counter()
        try:
            with progress:
                answer = answer_for(self.shelf, key, query, self.controls["k"].value, self.filters,
                                progress=self.progress)
        finally:
            progress.clear_output()
            self._relabel()
        self._built_in += time.perf_counter() - started
        return answer

    def _refresh(self, query: Query | None = None):
        """Search with the controls' values; state and views change only when every search succeeded."""
        query = query or self._query
        started, self._built_in = time.perf_counter(), 0.0
        answer = self._search(self.backbone, query)
        comparison = {}
        if self.controls["compare"].value:
            for key in self.shelf.choices:
                try:
                    comparison[key] = answer if key == self.backbone else self._search(key, query)
                except WeightsUnavailableError as error:
                    comparison[key] = f"unavailable: {str(error).splitlines()[0]}"
                    self._relabel()
        self._query, self._answer, self._comparison = query, answer, comparison
        c = self.controls
        c["query_view"].value = query_html(answer)
        if comparison:
            c["results_view"].value = comparison_html({self.shelf.choices[key].label: value
                                                       for key, value in comparison.items()})
        else:
            c["results_view"].value = results_html(answer)
        elapsed = time.perf_counter() - started
        built = f" (features computed in {self._built_in:.1f} s)" if self._built_in else ""
        recipe = "" if self.shelf.recipe_name == "baseline" else f", recipe {html.escape(self.shelf.recipe_name)}"
        self._say(f"{html.escape(answer.choice.label)}{recipe}: top {len(answer.results)} of {answer.n_allowed:,} "
                  f"products ({html.escape(answer.filters.describe())}) in {elapsed:.2f} s{built}")
