"""A product (splats, mesh, turntable) from one photo; see :mod:`.pipeline`."""
from .pipeline import DEFAULT_HEIGHT, SIZE_NOTE, ProductOptions, make_product

__all__ = ["make_product", "ProductOptions", "DEFAULT_HEIGHT", "SIZE_NOTE"]
