"""onefit: train one elastic supernet once, then specialize it for every device.

Example:
    >>> import onefit
    >>> net = onefit.create_supernet("mobilenetv3", num_classes=10, image_size=32)
    >>> cfg = net.sample_active(seed=0)
    >>> model = net.extract(cfg)            # a plain nn.Module
    >>> net.macs(cfg) == onefit.count(model, net.input_shape(cfg)).macs
    True
"""

from onefit.convert import elasticize
from onefit.data import DataSplits, from_tensors, list_datasets, load_dataset
from onefit.metrics.counting import Cost, count
from onefit.registry import Registry
from onefit.search import SearchResult, list_search_strategies
from onefit.search import search as run_search
from onefit.space import ArchConfig, Dimension, SearchSpace, flatten_lists, nest_lists
from onefit.supernets import (
    Supernet,
    create_supernet,
    import_once_for_all,
    list_supernets,
    register_supernet,
)
from onefit.training import TrainConfig, TrainResult, list_strategies, load_supernet, train
from onefit.version import __version__

# Subpackages used as onefit.metrics..., onefit.search..., onefit.deploy...
from onefit import deploy, metrics, predictors, profiling, search, tasks  # isort: skip

__all__ = [
    "ArchConfig",
    "Cost",
    "DataSplits",
    "Dimension",
    "Registry",
    "SearchResult",
    "SearchSpace",
    "Supernet",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "count",
    "create_supernet",
    "deploy",
    "elasticize",
    "flatten_lists",
    "from_tensors",
    "import_once_for_all",
    "list_datasets",
    "list_search_strategies",
    "list_strategies",
    "list_supernets",
    "load_dataset",
    "load_supernet",
    "metrics",
    "nest_lists",
    "predictors",
    "profiling",
    "register_supernet",
    "run_search",
    "search",
    "tasks",
    "train",
]
