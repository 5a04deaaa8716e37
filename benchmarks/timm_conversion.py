"""How many of timm's models onefit converts well (issue 15's "before" and "after" figure).

For each model (built with ``pretrained=False``: nothing downloads) the script converts
it with :func:`onefit.elasticize` and sorts the outcome into one of:

* ``well``: the largest config computes what the model does (max difference <= 1e-5 of
  the logits' scale), random sub-networks extract to static models that compute what
  the supernet computes, and the smallest config has at most half the largest's MACs;
* ``not elastic enough``: exact, but the smallest keeps more than half the MACs (or the
  space has a single config); the report's static layers say why;
* ``wrong``: the largest or an extracted sub-network computes something else;
* ``clear error``: a onefit ``UserError`` naming the construct;
* ``raw error``: any other exception (a traceback from deep inside).

Usage::

    python benchmarks/timm_conversion.py --json benchmarks/results/timm_conversion_before.json
    python benchmarks/timm_conversion.py --models resnet18,mobilenetv2_100 --random 3
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from collections import Counter
from typing import Any

import torch

import onefit
from onefit.errors import UserError

# At least 40 models across timm's families: CNNs old and new, inverted-residual nets,
# grouped and multi-branch convolutions, concatenations, and transformers.
MODELS = [
    # ResNet and relatives
    "resnet18", "resnet50", "resnet26d", "seresnet50", "resnext50_32x4d", "wide_resnet50_2",
    "resnetv2_50", "res2net50_26w_4s", "skresnet18",
    # RegNet
    "regnetx_002", "regnety_004", "regnetz_b16",
    # inverted residuals
    "mobilenetv2_100", "mobilenetv3_large_100", "mobilenetv3_small_100", "efficientnet_b0",
    "tf_efficientnet_b0", "efficientnetv2_rw_t", "mnasnet_100", "fbnetc_100", "lcnet_100",
    "tinynet_a", "ghostnet_100", "mixnet_s", "semnasnet_100", "spnasnet_100",
    # concatenations and CSP
    "densenet121", "cspresnet50", "cspdarknet53", "dla34", "hrnet_w18_small",
    # re-parameterisable
    "repvgg_a0", "mobileone_s0",
    # modern CNNs
    "convnext_atto", "convnextv2_atto", "edgenext_xx_small", "efficientformer_l1",
    "rexnet_100", "hardcorenas_a", "dpn68",
    # transformers and hybrids
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224",
    "mobilevit_xxs", "levit_128s", "poolformer_s12", "coat_lite_tiny",
]  # fmt: skip

TOLERANCE = 1e-5


def _input(model: torch.nn.Module, side: int | None) -> torch.Tensor:
    """One image of ``side`` pixels where the model runs on it, else at its default size
    (transformers with fixed position tables or attention biases need theirs)."""
    channels, height, width = model.pretrained_cfg.get("input_size", (3, 224, 224))
    generator = torch.Generator().manual_seed(0)
    if side is not None:
        small = torch.randn(1, channels, side, side, generator=generator)
        try:
            with torch.no_grad():
                model(small)
            return small
        except Exception:  # the model itself refuses this size: not a conversion failure
            pass
    return torch.randn(1, channels, height, width, generator=generator)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@torch.no_grad()
def survey(name: str, side: int | None, random_configs: int) -> dict[str, Any]:
    import timm

    row: dict[str, Any] = {"model": name}
    started = time.perf_counter()
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    x = _input(model, side)
    row["input"] = list(x.shape)
    try:
        net = onefit.elasticize(model, x, verbose=False).eval()
    except UserError as error:
        return {**row, "outcome": "clear error", "error": f"{type(error).__name__}: {error}"[:400]}
    except Exception as error:  # what the issue counts as a raw traceback
        where = traceback.extract_tb(error.__traceback__)[-1]
        return {
            **row, "outcome": "raw error",
            "error": f"{type(error).__name__}: {error}"[:400],
            "at": f"{where.filename.split('site-packages/')[-1]}:{where.lineno}",
        }  # fmt: skip
    try:
        reference = model(x)
        net.set_largest()
        row["largest_rel_diff"] = _relative(net(x), reference)
        space = net.space
        row["space_size"] = str(space.size)
        row["dimensions"] = len(space.names)
        largest, smallest = net.macs(space.largest()), net.macs(space.smallest())
        row["macs_largest"], row["macs_smallest"] = largest, smallest
        row["smallest_share"] = smallest / largest
        worst = 0.0
        for config in [space.smallest(), *space.sample_many(random_configs, seed=0)]:
            net.set_active(config)
            worst = max(worst, _relative(net.extract(config)(x), net(x)))
        row["extract_rel_diff"] = worst
        report = getattr(net, "report", None)
        if report is not None:  # converted nets; families such as vit have no layer report
            reasons = Counter(r.static_because for r in report.rows if r.static_because)
            row["static_layers"] = sum(reasons.values())
            row["static_reasons"] = [f"{n} x {why}"[:160] for why, n in reasons.most_common(3)]
    except Exception as error:
        return {**row, "outcome": "raw error", "error": f"{type(error).__name__}: {error}"[:400]}
    finally:
        row["seconds"] = round(time.perf_counter() - started, 1)
    exact = row["largest_rel_diff"] <= TOLERANCE and row["extract_rel_diff"] <= TOLERANCE
    if not exact:
        row["outcome"] = "wrong"
    elif space.size == 1 or row["smallest_share"] > 0.5:
        row["outcome"] = "not elastic enough"
    else:
        row["outcome"] = "well"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="Comma-separated timm names (default: the list).")
    parser.add_argument("--side", type=int, default=64,
                        help="Image side for CNNs (transformers use their own).")  # fmt: skip
    parser.add_argument("--random", type=int, default=5, help="Random configs per model.")
    parser.add_argument("--json", help="Write the rows and the summary here.")
    args = parser.parse_args()
    import timm

    names = args.models.split(",") if args.models else MODELS
    rows = []
    for name in names:
        row = survey(name, args.side, args.random)
        rows.append(row)
        share = row.get("smallest_share")
        print(
            f"{name:32s} {row['outcome']:20s} "
            + (f"smallest {share:.2f} of MACs " if share is not None else "")
            + (row.get("error", "")[:100]),
            flush=True,
        )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    summary = {
        "models": len(rows),
        "counts": counts,
        "share_well": counts.get("well", 0) / len(rows),
        "timm": timm.__version__,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "command": "python benchmarks/timm_conversion.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v is not None and k != "json"),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"summary": summary, "rows": rows}, file, indent=1)


if __name__ == "__main__":
    main()
