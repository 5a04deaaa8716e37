"""Peak memory of one inference.

CUDA: ``torch.cuda.max_memory_allocated`` around the call (after resetting the peak),
which counts every tensor the caching allocator hands out on that device.

CPU has no such counter, so onefit counts the same thing itself: a
``TorchDispatchMode`` sees every tensor each operator returns, adds its storage's bytes
when the storage first appears and subtracts them when the last tensor using it is
freed. The peak of that running sum, plus the bytes of the weights, buffers and input,
is the figure reported. Like the CUDA figure it excludes allocator slack and the
scratch space that kernels allocate outside PyTorch (oneDNN, for instance).

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(100, 50), torch.nn.ReLU())
    >>> mem = peak_memory(model, (100,))
    >>> mem.weights_bytes == 4 * (100 * 50 + 50) and mem.input_bytes == 400
    True
    >>> mem.activations_bytes  # Linear's output and ReLU's (a new tensor), alive together
    400
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


@dataclass(frozen=True)
class MemoryResult:
    """Bytes of one inference: weights + input + the peak of live intermediate tensors."""

    weights_bytes: int
    input_bytes: int
    activations_bytes: int
    method: str

    @property
    def peak_bytes(self) -> int:
        return self.weights_bytes + self.input_bytes + self.activations_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_bytes": self.peak_bytes,
            "weights_bytes": self.weights_bytes,
            "input_bytes": self.input_bytes,
            "activations_bytes": self.activations_bytes,
            "method": self.method,
        }


class _LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of storages created by operators while the mode is active."""

    def __init__(self, ignore: set[int]) -> None:
        super().__init__()
        self.ignore = ignore  # storages that existed before (weights, input)
        self.users: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._track(leaf)
        return out

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self.ignore or storage.nbytes() == 0:
            return
        if key not in self.users:
            self.users[key] = 0
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self.users[key] += 1
        weakref.finalize(tensor, self._release, key, storage.nbytes())

    def _release(self, key: int, nbytes: int) -> None:
        self.users[key] -= 1
        if self.users[key] == 0:
            del self.users[key]
            self.live -= nbytes


def _storage_bytes(tensors: Sequence[torch.Tensor]) -> tuple[int, set[int]]:
    sizes = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(sizes.values()), set(sizes)


def peak_memory(
    model: nn.Module, input_shape: Sequence[int], *, batch_size: int = 1, device: str = "cpu"
) -> MemoryResult:
    """Peak memory of one eager inference of ``model`` on a batch (see the module doc)."""
    model = copy.deepcopy(model).to(device).eval()  # leave the caller's model as it was
    x = torch.zeros(batch_size, *input_shape, device=device)
    weights, ignore = _storage_bytes([*model.parameters(), *model.buffers()])
    input_bytes = x.untyped_storage().nbytes()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode():
            model(x)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        return MemoryResult(weights, input_bytes, peak, "cuda max_memory_allocated")
    tracker = _LiveTensorBytes(ignore | {x.untyped_storage().data_ptr()})
    with torch.inference_mode(), tracker:
        model(x)
    return MemoryResult(weights, input_bytes, tracker.peak, "live tensor bytes (dispatch mode)")
