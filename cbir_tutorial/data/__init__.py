"""Catalogues: loaders for each layout, the ``Catalogue`` table, robust image decoding, derived categories."""

from .catalogue import COLUMNS, Catalogue
from .categories import category_from_description
from .images import ImageError, SkippedImage, load_rgb
from .loaders import (SampleUnavailableError, find_farfetch_root, load_farfetch, load_fashion_products, load_folder,
                      load_sample)

__all__ = ["COLUMNS", "Catalogue", "ImageError", "SampleUnavailableError", "SkippedImage",
           "category_from_description", "find_farfetch_root", "load_farfetch", "load_fashion_products",
           "load_folder", "load_rgb", "load_sample"]
