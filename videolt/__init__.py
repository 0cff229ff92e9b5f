"""videolt: long-tailed video recognition from VideoLT video IDs to paper-style results."""

__version__ = "0.1.0"

__all__ = ["__version__"]
