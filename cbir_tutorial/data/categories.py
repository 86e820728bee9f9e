"""Category labels from short product descriptions ("logo print strap sandals" → ``"sandals"``).

Farfetch listings carry no category column, only a ``shortDescription`` such as
``"Blake herringbone midi dress"``. English product names put the garment noun last, so the label is
the *last* word of the description that names a product type:

1. lowercase, turn typographic dashes into ``-``;
2. split into tokens on whitespace and punctuation, keeping hyphenated words whole
   (``"T-shirt"`` → ``"t-shirt"``, ``"slim-fit jeans"`` → ``["slim-fit", "jeans"]``);
3. scan the tokens from the end; at each position try the two-word form first (``"polo shirt"``,
   ``"tank top"``) then the single word; return the canonical label of the first hit;
4. no hit → ``""`` (unknown; metrics treat it as unlabelled).

So ``"shirt dress"`` → ``"dress"``, ``"leather belt bag"`` → ``"bag"``, ``"cap-sleeve dress"`` →
``"dress"`` (``cap-sleeve`` is one token) and ``"tie-dye T-shirt"`` → ``"t-shirt"``.

The vocabulary (:data:`VOCABULARY`, surface form → canonical label) folds singular and plural into
one label. Labels are singular (``dress``, ``bag``, ``t-shirt``) except for items sold or named as a
pair, which keep the plural (``sandals``, ``sneakers``, ``jeans``, ``trousers``, ``shorts``, ``socks``,
``gloves``, ``earrings``, ``sunglasses``, ``briefs``...). Only these synonyms are folded:

- ``trainer(s)`` → ``sneakers``
- ``jumper(s)``, ``pullover(s)`` → ``sweater``
- ``tee(s)``, ``tshirt(s)``, ``t shirt(s)`` → ``t-shirt``
- ``polo(s)`` → ``polo shirt``
- ``hoody`` → ``hoodie``
- ``pants`` → ``trousers``
- ``handbag(s)`` → ``bag``; ``tote bag`` → ``tote``; ``clutch bag`` → ``clutch``
- ``ballet flats``, ``ballerina shoes`` → ``ballerinas``
- ``derby``/``derbies`` → ``derby shoes``; ``oxford(s)`` → ``oxford shoes``
- ``bikini top``/``bikini bottoms``/``bikini briefs`` → ``bikini``
- ``flip flops``/``flip-flops`` → ``flip flops``

Everything else stays separate on purpose: ``tote``, ``clutch`` and ``backpack`` are not ``bag``;
``blouse``, ``top``, ``tank top`` and ``shirt`` are four labels; ``swim shorts`` is not ``shorts``;
``boots`` are not ``shoes``. Finer labels make retrieval metrics stricter, never wrong.
"""

from __future__ import annotations

import re
from typing import Iterable

# Canonical label → the surface forms (lowercase; one or two words) that map to it.
_FORMS: dict[str, tuple[str, ...]] = {
    # dresses, skirts, bottoms
    "dress": ("dress", "dresses"),
    "skirt": ("skirt", "skirts"),
    "trousers": ("trousers", "trouser", "pants"),
    "jeans": ("jeans", "jean"),
    "shorts": ("shorts",),
    "swim shorts": ("swim shorts", "swimming shorts"),
    "leggings": ("leggings", "legging"),
    # tops
    "shirt": ("shirt", "shirts"),
    "t-shirt": ("t-shirt", "t-shirts", "tshirt", "tshirts", "t shirt", "t shirts", "tee", "tees"),
    "polo shirt": ("polo shirt", "polo shirts", "polo", "polos"),
    "blouse": ("blouse", "blouses"),
    "top": ("top", "tops"),
    "tank top": ("tank top", "tank tops"),
    "vest": ("vest", "vests"),
    "sweater": ("sweater", "sweaters", "jumper", "jumpers", "pullover", "pullovers"),
    "cardigan": ("cardigan", "cardigans"),
    "hoodie": ("hoodie", "hoodies", "hoody"),
    "sweatshirt": ("sweatshirt", "sweatshirts"),
    # outerwear and tailoring
    "jacket": ("jacket", "jackets"),
    "coat": ("coat", "coats"),
    "blazer": ("blazer", "blazers"),
    "gilet": ("gilet", "gilets"),
    "suit": ("suit", "suits"),
    # one-pieces, underwear, swimwear
    "jumpsuit": ("jumpsuit", "jumpsuits"),
    "playsuit": ("playsuit", "playsuits"),
    "bodysuit": ("bodysuit", "bodysuits"),
    "bra": ("bra", "bras"),
    "briefs": ("briefs", "brief"),
    "boxers": ("boxers", "boxer"),
    "swimsuit": ("swimsuit", "swimsuits"),
    "bikini": ("bikini", "bikinis", "bikini top", "bikini bottoms", "bikini briefs"),
    # footwear
    "sneakers": ("sneakers", "sneaker", "trainers", "trainer"),
    "boots": ("boots", "boot"),
    "sandals": ("sandals", "sandal"),
    "pumps": ("pumps", "pump"),
    "loafers": ("loafers", "loafer"),
    "mules": ("mules", "mule"),
    "ballerinas": ("ballerinas", "ballerina", "ballerina shoes", "ballet flats"),
    "espadrilles": ("espadrilles", "espadrille"),
    "slippers": ("slippers", "slipper"),
    "slides": ("slides", "slide"),
    "flip flops": ("flip flops", "flip-flops", "flip flop", "flip-flop"),
    "derby shoes": ("derby shoes", "derby", "derbies"),
    "oxford shoes": ("oxford shoes", "oxford", "oxfords"),
    "brogues": ("brogues", "brogue"),
    "shoes": ("shoes", "shoe"),
    # bags and small leather goods
    "bag": ("bag", "bags", "handbag", "handbags"),
    "tote": ("tote", "totes", "tote bag", "tote bags"),
    "clutch": ("clutch", "clutches", "clutch bag", "clutch bags"),
    "backpack": ("backpack", "backpacks"),
    "wallet": ("wallet", "wallets"),
    "cardholder": ("cardholder", "cardholders", "card holder", "card holders"),
    "belt": ("belt", "belts"),
    # accessories
    "hat": ("hat", "hats"),
    "cap": ("cap", "caps"),
    "beanie": ("beanie", "beanies"),
    "scarf": ("scarf", "scarves", "scarfs"),
    "gloves": ("gloves", "glove"),
    "sunglasses": ("sunglasses",),
    "glasses": ("glasses",),
    "socks": ("socks", "sock"),
    "tie": ("tie", "ties"),
    # jewellery and watches
    "earrings": ("earrings", "earring"),
    "necklace": ("necklace", "necklaces"),
    "ring": ("ring", "rings"),
    "bracelet": ("bracelet", "bracelets"),
    "watch": ("watch", "watches"),
}


def _vocabulary(forms: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Surface form → canonical label, refusing a form listed under two labels."""
    vocabulary: dict[str, str] = {}
    for label, surfaces in forms.items():
        for surface in surfaces:
            if vocabulary.setdefault(surface, label) != label:
                raise ValueError(f"{surface!r} is listed under {vocabulary[surface]!r} and {label!r}")
    return vocabulary


#: Surface form (lowercase, one word or two words joined by a space) → canonical category label.
VOCABULARY: dict[str, str] = _vocabulary(_FORMS)

#: The canonical labels, sorted.
LABELS: tuple[str, ...] = tuple(sorted(set(VOCABULARY.values())))

_DASHES = re.compile("[\u2010\u2011\u2012\u2013\u2014\u2212]")
_TOKEN = re.compile(r"[^\W_]+(?:-[^\W_]+)*")


def tokens(text: str) -> list[str]:
    """Lowercase word tokens of ``text``; hyphenated words stay whole (``"T-shirt"`` → ``["t-shirt"]``)."""
    return _TOKEN.findall(_DASHES.sub("-", str(text).lower()))


def category_from_description(text: str | None) -> str:
    """The canonical category of the last product-type word in ``text`` (``""`` when none).

    ``"logo print strap sandals"`` → ``"sandals"``; ``"Blake herringbone midi dress"`` → ``"dress"``;
    ``"logo T-shirt"`` → ``"t-shirt"``; ``"pleated midi"`` → ``""``. ``None``/NaN → ``""``.
    """
    if not isinstance(text, str):
        return ""
    words = tokens(text)
    for i in range(len(words) - 1, -1, -1):
        if i > 0:
            label = VOCABULARY.get(f"{words[i - 1]} {words[i]}")
            if label:
                return label
        label = VOCABULARY.get(words[i])
        if label:
            return label
    return ""


def categories_from_descriptions(texts: Iterable[str | None]) -> list[str]:
    """:func:`category_from_description` of each text, in order (repeated texts parsed once)."""
    seen: dict[object, str] = {}
    labels = []
    for text in texts:
        key = text if isinstance(text, str) else None
        if key not in seen:
            seen[key] = category_from_description(key)
        labels.append(seen[key])
    return labels
