"""Import the published Once-for-All supernets (Cai et al., ICLR 2020) into onefit.

MIT HAN Lab released ImageNet supernets trained with progressive shrinking:
``ofa_mbv3_d234_e346_k357_w1.0`` and ``..._w1.2`` (MobileNetV3 space: depths 2/3/4,
expand ratios 3/4/6, kernels 3/5/7, width 1.0 or 1.2) and ``ofa_resnet50`` (the file
``ofa_resnet50_d0-1-2_e0.2-0.25-0.35_w0.65-0.8-1.0``). Each file is a
``{"state_dict": ...}`` of OFA's ``OFAMobileNetV3`` or ``OFAResNets``. This module
renames those keys to onefit's ``mobilenetv3`` and ``resnet`` families (the latter with
``elastic_stem=True``, OFA-ResNet's three stem dimensions), whose layers compute exactly
what OFA's dynamic layers compute (same channel prefixes, the same kernel-transform
matrices, the same squeeze-excite and bottleneck width rules), so every sub-network of
the imported supernet gives OFA's outputs.

Older OFA files use other key names, which OFA's own ``load_state_dict`` still
rewrites: ``.mobile_inverted_conv.`` for ``.conv.``, ``.bn.`` for the nested
``.bn.bn.``, ``.conv.weight`` for ``.conv.conv.weight`` and ``.linear.`` for
``.linear.linear.``. Both spellings are read here, by reducing every key to the
un-nested one before renaming.

Example:
    >>> import torch
    >>> from onefit.supernets.mobilenetv3 import MobileNetV3Supernet
    >>> source = MobileNetV3Supernet(num_classes=10, dropout=0)
    >>> state = ofa_state_dict(source)  # what OFA's code would save for these weights
    >>> net = import_once_for_all(state, "ofa_mbv3_d234_e346_k357_w1.0")
    >>> net.num_classes, torch.equal(net.stem[0].weight, source.stem[0].weight)
    (10, True)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from onefit.errors import UnknownNameError, UserError, UserTypeError
from onefit.files import read_state_dict
from onefit.supernets.base import Supernet
from onefit.supernets.registry import create_supernet

if TYPE_CHECKING:  # the families import this module to load weights: no import back
    from onefit.supernets.mobilenetv3 import MobileNetV3Supernet
    from onefit.supernets.resnet import ResNetSupernet

_MBV3_NAME = re.compile(r"ofa_mbv3_d(\d+)_e(\d+)_k(\d+)_w(\d+(?:\.\d+)?)")
RESNET50_NAMES = ("ofa_resnet50", "ofa_resnet50_d0-1-2_e0.2-0.25-0.35_w0.65-0.8-1.0")
KNOWN_NAMES = ("ofa_mbv3_d234_e346_k357_w1.0", "ofa_mbv3_d234_e346_k357_w1.2", *RESNET50_NAMES)
# OFA-ResNet50: base depths 2/2/4/2 plus 0..2, expand 0.2/0.25/0.35, widths 0.65/0.8/1.0.
RESNET50_ARGUMENTS: dict[str, Any] = {
    "base_width": 64,
    "depth_extras": (0, 1, 2),
    "expand_ratios": (0.2, 0.25, 0.35),
    "width_mults": (0.65, 0.8, 1.0),
    "elastic_stem": True,
}

# OFA's names of the parts of one inverted-residual block -> onefit's.
_BLOCK_PARTS = {
    "inverted_bottleneck.conv.weight": "expand_conv.weight",
    "inverted_bottleneck.bn.": "expand_bn.",
    "depth_conv.conv.weight": "dw_conv.weight",
    "depth_conv.bn.": "dw_bn.",
    "depth_conv.se.fc.reduce.": "se.reduce.",
    "depth_conv.se.fc.expand.": "se.expand.",
    "point_linear.conv.weight": "project_conv.weight",
    "point_linear.bn.": "project_bn.",
}
_FIXED_PARTS = {
    "first_conv.conv.weight": "stem.0.weight",
    "first_conv.bn.": "stem.1.",
    "blocks.0.conv.depth_conv.conv.weight": "first_block.body.0.weight",
    "blocks.0.conv.depth_conv.bn.": "first_block.body.1.",
    "blocks.0.conv.point_linear.conv.weight": "first_block.body.3.weight",
    "blocks.0.conv.point_linear.bn.": "first_block.body.4.",
    "final_expand_layer.conv.weight": "head.0.weight",
    "final_expand_layer.bn.": "head.1.",
    "feature_mix_layer.conv.weight": "head.4.weight",
    "classifier.linear.": "head.8.",
}
_KERNEL_MATRIX = re.compile(r"depth_conv\.conv\.(\d+to\d+)_matrix$")


def family_arguments(name: str) -> tuple[str, dict[str, Any]]:
    """The onefit family and its arguments for the OFA supernet called ``name``.

    Example:
        >>> family_arguments("ofa_mbv3_d234_e346_k357_w1.2")[1]["width_mult"]
        1.2
        >>> family_arguments("ofa_resnet50")[0]
        'resnet'
    """
    if name in RESNET50_NAMES:
        return "resnet", dict(RESNET50_ARGUMENTS)
    match = _MBV3_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise UnknownNameError(
            f"unknown Once-for-All supernet {name!r}; known: {', '.join(KNOWN_NAMES)} "
            "(MobileNetV3 names say ofa_mbv3_d<depths>_e<expand ratios>_k<kernels>_w<width>)"
        )
    depths, ratios, kernels, width = match.groups()
    return "mobilenetv3", {
        "depths": tuple(int(d) for d in depths),
        "expand_ratios": tuple(int(e) for e in ratios),
        "kernel_sizes": tuple(int(k) for k in kernels),
        "width_mult": float(width),
    }


def _unnested(key: str) -> str:
    """``key`` in OFA's oldest spelling: one ``.conv``, ``.bn`` or ``.linear`` level."""
    key = key.removeprefix("module.").replace(".mobile_inverted_conv.", ".conv.")
    for nested, single in (
        (".bn.bn.", ".bn."),
        (".conv.conv.weight", ".conv.weight"),
        (".linear.linear.", ".linear."),
    ):
        while nested in key:
            key = key.replace(nested, single)
    return key


def _renamed(key: str, net: Supernet) -> str | None:
    """onefit's name in ``net`` for the (un-nested) OFA key, None for a key onefit lacks."""
    layout = getattr(net, "once_for_all_layout", None)  # set by the two families' classes
    if layout == "resnet":
        return _renamed_resnet(key, net)  # type: ignore[arg-type]
    if layout == "mobilenetv3":
        return _renamed_mobilenetv3(key, int(getattr(net, "max_depth")))  # noqa: B009
    raise UserTypeError(
        f"Once-for-All weights fit mobilenetv3 and resnet, not {type(net).__name__}"
    )


_RESNET_FIXED = {
    "input_stem.0.conv.weight": "stem.0.weight",
    "input_stem.0.bn.": "stem.1.",
    "input_stem.1.conv.weight": "stem.3.body.0.weight",  # the residual stem conv
    "input_stem.1.conv.bn.": "stem.3.body.1.",
    "input_stem.2.conv.weight": "stem.4.weight",
    "input_stem.2.bn.": "stem.5.",
    "classifier.linear.": "classifier.",
}
_RESNET_BLOCK = {
    "conv1.conv.weight": "conv1.weight",
    "conv1.bn.": "bn1.",
    "conv2.conv.weight": "conv2.weight",
    "conv2.bn.": "bn2.",
    "conv3.conv.weight": "conv3.weight",
    "conv3.bn.": "bn3.",
    "downsample.conv.weight": "shortcut_conv.weight",
    "downsample.bn.": "shortcut_bn.",
}


def _renamed_resnet(key: str, net: ResNetSupernet) -> str | None:
    for prefix, target in _RESNET_FIXED.items():
        if key.startswith(prefix):
            return target + key[len(prefix) :]
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
    if match is None:
        return None
    index, part = int(match.group(1)), match.group(2)
    stage = sum(offset <= index for offset in net.block_offsets) - 1
    block = f"stages.{stage}.{index - net.block_offsets[stage]}."
    for prefix, target in _RESNET_BLOCK.items():
        if part.startswith(prefix):
            return block + target + part[len(prefix) :]
    return None


def _renamed_mobilenetv3(key: str, max_depth: int) -> str | None:
    for prefix, target in _FIXED_PARTS.items():
        if key.startswith(prefix):
            return target + key[len(prefix) :]
    match = re.fullmatch(r"blocks\.(\d+)\.conv\.(.+)", key)
    if match is None or int(match.group(1)) == 0:
        return None
    index, part = int(match.group(1)) - 1, match.group(2)
    block = f"stages.{index // max_depth}.{index % max_depth}."
    matrix = _KERNEL_MATRIX.fullmatch(part)
    if matrix is not None:
        return block + f"dw_conv.kernel_transforms.{matrix.group(1)}"
    for prefix, target in _BLOCK_PARTS.items():
        if part.startswith(prefix):
            return block + target + part[len(prefix) :]
    return None


def onefit_state_dict(ofa_state: Mapping[str, torch.Tensor], net: Supernet) -> dict:
    """OFA's state dict renamed to ``net``'s keys (a mobilenetv3 or resnet supernet),
    checked key by key: every key known, every tensor of ``net`` given, shapes equal."""
    expected = net.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in ofa_state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise UserTypeError(f"a state dict maps names to tensors, got {key!r}: {type(value)}")
        target = _renamed(_unnested(key), net)
        if target is None or target not in expected:
            unknown.append(key)
            continue
        if value.shape != expected[target].shape:
            raise UserError(
                f"{key} has shape {list(value.shape)}, the supernet expects "
                f"{list(expected[target].shape)} for {target}: is the file of another "
                "width multiplier, depth or kernel list than its name says?"
            )
        if target in renamed:
            raise UserError(f"{key} names {target} a second time (both key spellings in one file?)")
        renamed[target] = value
    # Counters OFA's code does not need: the supernet keeps its own where a file has none.
    for key in set(expected) - set(renamed):
        if key.endswith("num_batches_tracked"):
            renamed[key] = expected[key]
    missing = sorted(set(expected) - set(renamed))
    if unknown or missing:
        raise UserError(
            f"not a Once-for-All {type(net).__name__} state dict of this shape: "
            + (f"{len(unknown)} unknown keys (first: {unknown[:3]})" if unknown else "")
            + ("; " if unknown and missing else "")
            + (f"{len(missing)} missing (first: {missing[:3]})" if missing else "")
        )
    return renamed


def ofa_state_dict(net: MobileNetV3Supernet) -> dict[str, torch.Tensor]:
    """``net``'s weights under the key names OFA's ``OFAMobileNetV3`` uses today.

    The inverse of :func:`onefit_state_dict` (MobileNetV3), for exporting to OFA's code.
    """
    names = {}
    for key in _ofa_keys(net):
        target = _renamed_mobilenetv3(_unnested(key), net.max_depth)
        names[target] = key
    return {names[key]: value for key, value in net.state_dict().items()}


def _ofa_keys(net: MobileNetV3Supernet) -> list[str]:
    """The keys of OFA's ``OFAMobileNetV3`` with ``net``'s layout (current spelling)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["first_conv.conv.weight", *(f"first_conv.bn.{s}" for s in bn)]
    for part in ("depth_conv", "point_linear"):
        keys += [f"blocks.0.conv.{part}.conv.weight", *(f"blocks.0.conv.{part}.bn.{s}" for s in bn)]
    for s, stage in enumerate(net.blocks_by_stage):
        for b, block in enumerate(stage):
            prefix = f"blocks.{1 + s * net.max_depth + b}.conv."
            keys.append(prefix + "inverted_bottleneck.conv.conv.weight")
            keys += [prefix + f"inverted_bottleneck.bn.bn.{x}" for x in bn]
            keys += [
                prefix + f"depth_conv.conv.{t}_matrix" for t in block.dw_conv.kernel_transforms
            ]
            keys.append(prefix + "depth_conv.conv.conv.weight")
            keys += [prefix + f"depth_conv.bn.bn.{x}" for x in bn]
            if block.se is not None:
                keys += [
                    prefix + f"depth_conv.se.fc.{f}.{p}"
                    for f in ("reduce", "expand")
                    for p in ("weight", "bias")
                ]
            keys.append(prefix + "point_linear.conv.conv.weight")
            keys += [prefix + f"point_linear.bn.bn.{x}" for x in bn]
    keys.append("final_expand_layer.conv.weight")
    keys += [f"final_expand_layer.bn.{s}" for s in bn]
    keys += ["feature_mix_layer.conv.weight", "classifier.linear.weight", "classifier.linear.bias"]
    return keys


def _read(source: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(source, (str, Path)):
        return read_state_dict(source, "Once-for-All weights")
    if not isinstance(source, Mapping):
        raise UserTypeError(
            f"Once-for-All weights are a file path or a state dict, got {type(source).__name__}"
        )
    state = source.get("state_dict", source)
    if not isinstance(state, Mapping):
        raise UserTypeError("the 'state_dict' entry of Once-for-All weights is not a dict")
    return state


def _num_classes(state: Mapping[str, Any]) -> int:
    for key, value in state.items():
        is_classifier = isinstance(key, str) and _unnested(key) == "classifier.linear.weight"
        if is_classifier and isinstance(value, torch.Tensor) and value.dim() == 2:
            return int(value.shape[0])
    raise UserError("not a Once-for-All state dict: it holds no classifier.linear weight")


def load_weights_argument(net: Supernet, weights: str | None) -> None:
    """A family's ``weights=`` argument: the path of an OFA file (None: nothing to load)."""
    if weights is None:
        return
    if not isinstance(weights, str):  # recorded in the spec, which is JSON
        raise UserTypeError(f"weights is the path of a file, got {type(weights).__name__}")
    load_once_for_all_weights(net, weights)


def load_once_for_all_weights(net: Supernet, source: str | Path | Mapping[str, Any]) -> None:
    """Load OFA's weights (a file or a state dict, either key spelling) into ``net``."""
    net.load_state_dict(onefit_state_dict(_read(source), net))


def import_once_for_all(
    source: str | Path | Mapping[str, Any],
    name: str = "ofa_mbv3_d234_e346_k357_w1.0",
    **kwargs: Any,
) -> Supernet:
    """The onefit supernet holding a released Once-for-All supernet's weights.

    ``source`` is the downloaded file (e.g. ``ofa_mbv3_d234_e346_k357_w1.0``, a
    ``{"state_dict": ...}``) or a state dict; ``name`` says which supernet it is
    (:data:`KNOWN_NAMES`). The number of classes is read from the weights; other family
    arguments (``image_size``, ``resolutions``) pass through ``kwargs``. Dropout
    defaults to 0, as in OFA's model zoo. The result is built with ``create_supernet``
    (family ``mobilenetv3``, or ``resnet`` with ``elastic_stem=True``), so it trains,
    saves, searches and exports like any onefit supernet.

    Example:
        >>> import onefit
        >>> from onefit.supernets.mobilenetv3 import MobileNetV3Supernet
        >>> state = ofa_state_dict(MobileNetV3Supernet(num_classes=10))
        >>> net = onefit.import_once_for_all(state)
        >>> net.spec["name"], net.num_classes, net.width_mult
        ('mobilenetv3', 10, 1.0)
    """
    state = _read(source)
    family, arguments = family_arguments(name)
    arguments.update({"num_classes": _num_classes(state), "dropout": 0.0})
    arguments.update(kwargs)
    net = create_supernet(family, **arguments)
    load_once_for_all_weights(net, state)
    return net
