"""What a learner looks at: result and catalogue figures, and the search explorer (its browser-free parts
``shelf``, ``query``, ``answer`` and ``views``, wired to ipywidgets in ``widgets``)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "catalogue_figure": ".plotting", "map_comparison_figure": ".plotting", "results_figure": ".plotting",
    "thumbnail": ".plotting", "SearchExplorer": ".widgets", "EngineShelf": ".shelf", "Query": ".query",
    "Answer": ".answer", "answer_for": ".answer", "results_view": ".views",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
