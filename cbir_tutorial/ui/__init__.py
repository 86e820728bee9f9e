"""What a learner looks at: result and catalogue figures, and the search explorer (logic and ipywidgets)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "catalogue_figure": ".plotting", "map_comparison_figure": ".plotting", "results_figure": ".plotting",
    "thumbnail": ".plotting", "SearchExplorer": ".widgets",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
