"""ONNX Runtime: the model exported to ONNX, run by an ``InferenceSession``.

The CPU provider is used on ``cpu`` and the CUDA provider on ``cuda`` (when the installed
onnxruntime build has it). Input and output cross as NumPy arrays, as in deployment.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from onefit.metrics.runtimes.base import Runtime, RuntimeUnavailableError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def export_onnx(model: nn.Module, example: torch.Tensor, dynamic_batch: bool = False) -> bytes:
    """The ONNX model (bytes) of ``model`` traced on ``example``; input ``input``, output
    ``output``, and with ``dynamic_batch`` any batch size.

    Uses the TorchScript-based exporter, which takes well under a second for these
    models (the dynamo exporter takes several), and falls back to the dynamo exporter
    where the older one is gone.
    """
    model = model.cpu().eval()
    example = example.cpu()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the older exporter warns that it is deprecated
        try:
            axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(
                model, (example,), buffer, dynamo=False, opset_version=17,  # type: ignore[arg-type]
                input_names=["input"], output_names=["output"], dynamic_axes=axes,
            )  # fmt: skip
            return buffer.getvalue()
        except (TypeError, RuntimeError, NotImplementedError):
            shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
            program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=shapes,
                                        input_names=["input"], output_names=["output"])  # fmt: skip
            assert program is not None
            return bytes(program.model_proto.SerializeToString())


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    install_hint = "pip install onnxruntime (or onnxruntime-gpu for CUDA)"

    def available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def devices(self) -> list[str]:
        if not self.available():
            return []
        import onnxruntime as ort

        found = ort.get_available_providers()
        return [device for device, provider in PROVIDERS.items() if provider in found]

    def session(self, onnx_model: bytes, device: str, threads: int) -> Any:
        import onnxruntime as ort

        provider = PROVIDERS.get(device.split(":")[0])
        if provider not in ort.get_available_providers():
            raise RuntimeUnavailableError(
                f"ONNX Runtime has no provider for {device!r}; available providers: "
                f"{ort.get_available_providers()}"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        kind, _, index = device.partition(":")
        if kind == "cuda":  # the device index picks the GPU, as torch's "cuda:1" does
            return ort.InferenceSession(
                onnx_model, options, providers=[(provider, {"device_id": int(index or 0)})]
            )
        return ort.InferenceSession(onnx_model, options, providers=[provider])

    def prepare(
        self, model: nn.Module, example: torch.Tensor, device: str, threads: int
    ) -> Callable[[], object]:
        session = self.session(export_onnx(model, example), device, threads)
        feed = {session.get_inputs()[0].name: example.cpu().numpy()}

        def run() -> object:
            return session.run(None, feed)

        return run
