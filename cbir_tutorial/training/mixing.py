r"""How much of the frozen features a trained model keeps: the fusion weight, chosen on categories it never saw.

Fine-tuning on a catalogue's categories makes them easier to tell apart, and can make the kinds of product it
never saw harder (it forgets what the frozen ImageNet features knew). The saved model's embedding is the
trained one fused with the frozen features, as :func:`cbir_tutorial.search.whitening.fuse` fuses:

.. math:: e_w(x) = \frac{[\sqrt{1 - w}\, f(x),\ \sqrt{w}\, t(x)]}{\|\cdot\|}

with :math:`f` the frozen features and :math:`t` the trained embedding, both L2-normalised; :math:`w = 0` is
the frozen features, :math:`w = 1` the trained model. The weight is chosen on a validation gallery that holds
the held-out products of the training categories (*seen types*) and whole categories held out of training
(*unseen types*, :func:`~.protocols.held_out_categories`): :func:`mixing_curve` measures MAP@k of both kinds of
query in that one gallery for each weight of :data:`MIXING_WEIGHTS`, and :func:`chosen_weight` takes the weight
with the best seen-type MAP among those whose unseen-type MAP is not below the frozen features' (``w = 0``);
:func:`fusion_choice` records the choice with the model. The test side is never looked at.
:func:`tradeoff_figure` draws the curve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..search.whitening import fuse

#: The fusion weights tried, from the frozen features (0) to the trained model (1).
MIXING_WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))
#: The rule :func:`chosen_weight` applies, in words (saved with the model).
MIXING_RULE = ("the best seen-type validation MAP among the weights whose unseen-type validation MAP (categories "
               "held out of training) is not below the frozen features'; with no seen-type query (validation by "
               "categories), the best unseen-type validation MAP")


def fused(frozen: np.ndarray, trained: np.ndarray, weight: float) -> np.ndarray:
    """``(N, F)`` frozen features and ``(N, D)`` trained embeddings → ``(N, F + D)`` float32, L2-normalised:
    ``[sqrt(1 - weight) · frozen, sqrt(weight) · trained]`` of the two L2-normalised, renormalised (what
    :func:`~cbir_tutorial.models.trained.fused_model` computes from a photo): the recipes' fusion,
    :func:`~cbir_tutorial.search.whitening.fuse`, with the weights ``1 - weight`` and ``weight``."""
    return fuse([frozen, trained], [1.0 - weight, weight])


def mixing_curve(frozen: np.ndarray, trained: np.ndarray, labels, seen_types, k: int = 10,
                 weights=MIXING_WEIGHTS) -> pd.DataFrame:
    """One row per fusion weight: ``weight``, ``map_seen`` / ``map_unseen`` (MAP@k of the queries whose category
    is / is not in ``seen_types``, each searching the whole gallery, leave-one-out) and ``map_all``.

    ``frozen`` ``(N, F)``, ``trained`` ``(N, D)``: the gallery's features and embeddings; ``labels`` ``(N,)``."""
    from ..evaluation.comparison import per_query
    from ..search.backends import make_index

    labels = np.asarray(labels, dtype=object).astype(str)
    seen_types = set(map(str, seen_types))
    rows = []
    for weight in weights:
        queries = per_query(make_index("exact", fused(frozen, trained, weight)), labels, k)
        seen = queries["category"].isin(seen_types).to_numpy()
        rows.append({"weight": float(weight), "map_seen": float(queries["ap_at_k"][seen].mean()),
                     "map_unseen": float(queries["ap_at_k"][~seen].mean()),
                     "map_all": float(queries["ap_at_k"].mean())})
    return pd.DataFrame(rows)


def chosen_weight(curve: pd.DataFrame) -> float:
    """The weight of ``curve`` (:func:`mixing_curve`) with the best ``map_seen`` among the weights whose
    ``map_unseen`` is not below the frozen features' (weight 0); ties go to the larger weight.

    A curve without seen-type queries (``map_seen`` NaN at every weight: every validation category is held out
    of training, ``validation_by="categories"``) chooses on what it has: the weight with the best ``map_unseen``,
    which is never below the frozen features' since weight 0 is among the candidates; ties again go to the
    larger weight. A curve whose ``map_unseen`` is NaN at weight 0 raises ``ValueError``."""
    curve = curve.sort_values("weight").reset_index(drop=True)
    frozen = curve.loc[curve["weight"] == 0.0, "map_unseen"]
    if frozen.empty:
        raise ValueError("the curve needs the frozen features' row (weight 0)")
    if not np.isfinite(frozen.iloc[0]):
        raise ValueError("the frozen features' unseen-type MAP (weight 0) is NaN: no category was held out")
    allowed = curve[curve["map_unseen"] >= frozen.iloc[0] - 1e-12]
    score = "map_seen" if allowed["map_seen"].notna().any() else "map_unseen"  # no seen-type query: the unseen
    best = allowed[score].max()
    return float(allowed.loc[allowed[score] >= best - 1e-12, "weight"].max())


def fusion_choice(frozen: np.ndarray, trained: np.ndarray, labels, seen_types, k: int, *, n_validation: int) -> dict:
    """The fusion weight chosen on a validation gallery and how (saved with the model as ``mixing``): ``weight``
    (:func:`chosen_weight`), ``rule``, ``held_out_categories`` (the labels not in ``seen_types``), ``n_held_out``,
    ``n_validation`` and ``curve`` (:func:`mixing_curve`, one record per weight).

    ``frozen`` ``(N, F)`` and ``trained`` ``(N, D)``: the gallery's frozen features and trained embeddings, its
    first ``n_validation`` rows the validation products of the training categories, the rest the held-out
    categories; ``labels`` ``(N,)``."""
    curve = mixing_curve(frozen, trained, labels, seen_types, k)
    held_out = np.asarray(labels, dtype=object).astype(str)[n_validation:]
    return {"weight": chosen_weight(curve), "rule": MIXING_RULE, "held_out_categories": sorted(set(held_out)),
            "n_held_out": int(len(held_out)), "n_validation": int(n_validation),
            "curve": curve.to_dict(orient="records")}


def no_fusion(mixing_fraction: float) -> dict:
    """The ``mixing`` record of a run that held no category out: weight 1 (the trained model alone) and why."""
    reason = ("no categories held out (mixing_fraction=0)" if not mixing_fraction else
              f"no categories could be held out (mixing_fraction={mixing_fraction:g}: at least 2 categories "
              "with 2+ products within that share of the products, and 2 left to train)")
    return {"weight": 1.0, "reason": reason}


def fusion_summary(mixing: dict, k: int) -> str | None:
    """One line on the chosen weight of ``mixing`` (:func:`fusion_choice`) against the frozen features and the
    trained model alone, on both kinds of validation query; None without a curve (:func:`no_fusion`)."""
    curve = {round(r["weight"], 2): r for r in mixing.get("curve", [])}
    if not curve:
        return None
    chosen, frozen, trained = curve[round(mixing["weight"], 2)], curve[0.0], curve[1.0]
    return (f"fusion with the frozen features, weight {mixing['weight']:g} (chosen on "
            f"{len(mixing['held_out_categories'])} categories held out of training): validation MAP@{k} seen types "
            f"{chosen['map_seen']:.4f}, unseen types {chosen['map_unseen']:.4f} (frozen {frozen['map_unseen']:.4f}, "
            f"the trained model alone {trained['map_unseen']:.4f})")


def _point_labels(curve: pd.DataFrame, tolerance: float = 0.002) -> list[tuple[str, float, float]]:
    """``(label, map_unseen, map_seen)`` for each point of ``curve`` (sorted by weight); consecutive weights whose
    points lie within ``tolerance`` of each other in both scores share one label, ``"0.3–0.5"``, where their
    labels would print over each other."""
    groups: list[list] = []
    for row in curve.itertuples():
        last = groups[-1][-1] if groups else None
        if last is not None and abs(row.map_unseen - last.map_unseen) <= tolerance \
                and abs(row.map_seen - last.map_seen) <= tolerance:
            groups[-1].append(row)
        else:
            groups.append([row])
    return [(f"{g[0].weight:g}" if len(g) == 1 else f"{g[0].weight:g}–{g[-1].weight:g}", g[0].map_unseen,
             g[0].map_seen) for g in groups]


def tradeoff_figure(curve: pd.DataFrame, weight: float | None = None, *, k: int = 10, title: str | None = None):
    """A matplotlib ``Figure``: seen-type against unseen-type MAP@k of each fusion weight of ``curve``
    (:func:`mixing_curve`), from the frozen features (0) to the trained model (1), each point labelled with its
    weight; the chosen ``weight`` (default :func:`chosen_weight`) circled, and a dashed line at the frozen
    features' unseen-type MAP (the points left of it forget)."""
    from matplotlib.figure import Figure

    curve = curve.sort_values("weight")
    weight = chosen_weight(curve) if weight is None else float(weight)
    fig = Figure(figsize=(5.6, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(curve["map_unseen"], curve["map_seen"], "-o", color="C0", ms=4, label="fusion weight w")
    for label, x, y in _point_labels(curve):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ends = curve.iloc[[0, -1]]
    ax.plot(ends["map_unseen"].iloc[0], ends["map_seen"].iloc[0], "s", color="0.3", label="frozen (w = 0)")
    ax.plot(ends["map_unseen"].iloc[1], ends["map_seen"].iloc[1], "^", color="C3", label="trained (w = 1)")
    chosen = curve.loc[np.isclose(curve["weight"], weight)].iloc[0]
    ax.plot(chosen["map_unseen"], chosen["map_seen"], "o", ms=13, mfc="none", mec="C2", mew=2,
            label=f"chosen (w = {weight:g})")
    ax.axvline(ends["map_unseen"].iloc[0], color="0.5", lw=1, ls="--")
    ax.set(xlabel=f"MAP@{k}, unseen types (categories held out of training)",
           ylabel=f"MAP@{k}, seen types (held-out products)",
           title=title or "frozen → trained: what is kept and what is learned")
    ax.legend(fontsize=8, loc="best")
    return fig
