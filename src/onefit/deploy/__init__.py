"""Deployment: pick sub-networks from a search, export them with model cards, report."""

from onefit.deploy import report
from onefit.deploy.card import ModelCard, ModelCardError
from onefit.deploy.export import (
    FORMATS,
    ExportCheckError,
    ExportError,
    ExportResult,
    export,
    load_exported,
)
from onefit.deploy.picks import NAMED_PICKS, PickError, SearchRecord, load_search, pick

__all__ = [
    "FORMATS",
    "NAMED_PICKS",
    "ExportCheckError",
    "ExportError",
    "ExportResult",
    "ModelCard",
    "ModelCardError",
    "PickError",
    "SearchRecord",
    "export",
    "load_exported",
    "load_search",
    "pick",
    "report",
]
