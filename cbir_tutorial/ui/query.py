"""What the explorer searches with: a catalogue product, an uploaded photo or a photo fetched by URL."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.catalogue import Catalogue
from ..data.images import ImageError, load_rgb
from ..data.remote import URL_MAX_BYTES, URL_TIMEOUT_S, photo_from_url, shown_url
from ..search.engine import SearchEngine

#: Side, pixels, at which an uploaded photo is decoded to check it.
CHECK_PX = 120


@dataclass(eq=False)
class Query:
    """What the learner searches with: catalogue product ``row`` or an uploaded photo (``image`` bytes;
    ``url``: the web address it came from, if any).

    ``category`` is the product's category (``""`` for an upload: no relevance, no scores).
    """

    row: int | None = None
    image: bytes | None = field(default=None, repr=False)
    name: str = ""
    category: str = ""
    path: str = ""
    url: str = ""
    _features: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_row(cls, catalogue: Catalogue, row: int) -> "Query":
        if not 0 <= int(row) < len(catalogue):
            raise IndexError(f"row {row} is outside the catalogue (0..{len(catalogue) - 1})")
        product = catalogue.table.iloc[int(row)]
        name = product["description"] or product["id"]
        return cls(row=int(row), name=str(name), category=str(product["category"]), path=str(product["path"]))

    @classmethod
    def from_upload(cls, content: bytes, name: str = "your photo") -> "Query":
        """An uploaded photo, decoded once now so that a bad file fails here (:class:`ImageError`)."""
        content = bytes(content)
        try:
            load_rgb(content, CHECK_PX)  # decodes it all (a JPEG at reduced scale: fast for big photos)
        except ImageError as error:
            raise ImageError(str(error).replace("<uploaded bytes>", repr(name))) from None
        return cls(image=content, name=name)

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = URL_TIMEOUT_S, max_bytes: int = URL_MAX_BYTES) -> "Query":
        """The photo at web address ``url`` (http or https), fetched and decoded now.

        Raises :class:`~cbir_tutorial.data.remote.RemoteImageError` (an :class:`ImageError`) naming
        ``url``: unreachable, too slow (``timeout_s``), too big (``max_bytes``), not an image. A password
        in ``url`` is sent, never shown (the query's name and ``url`` are :func:`~cbir_tutorial.data.remote.shown_url`).
        """
        name = shown_url(url)
        return cls(image=photo_from_url(url, timeout_s=timeout_s, max_bytes=max_bytes), name=name, url=name)

    @property
    def is_upload(self) -> bool:
        return self.image is not None

    @property
    def source(self) -> str | bytes:
        """The query image: a file path or the uploaded bytes."""
        return self.image if self.is_upload else self.path

    def features(self, key: str, engine: SearchEngine) -> np.ndarray:
        """``(D,)`` features of an uploaded photo for ``engine``, computed once per ``key`` (backbone and recipe)."""
        if key not in self._features:
            self._features[key] = engine.query_features(self.image)  # through the engine's recipe, if any
        return self._features[key]
