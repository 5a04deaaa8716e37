"""The onefit version: a leaf module, so any layer can record it (model cards, tables)."""

__version__ = "0.1.0"
