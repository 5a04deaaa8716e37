"""A converted supernet's sub-networks against L1-magnitude channel pruning, on MNIST.

For each torchvision architecture (ResNet-18, MobileNetV2; one input channel):

1. Pre-train the plain model briefly on real data: the MNIST test images in
   ../shared/data/mnist-t10k (8,000 train / 2,000 validation), resized to 32x32.
2. onefit: ``elasticize`` the pre-trained model (family ``torchvision`` with its
   weights) and fine-tune the supernet with the ``sandwich`` strategy for
   ``--finetune-epochs``. Evaluate sub-networks (BN recalibrated, no further training):
   the uniform-width configs (every width group at 25/50/75/100 %, full depth) and the
   smallest config (which the sandwich rule trains at every step), plus, for each MACs
   level of a pruned model below, a LINAS search for accuracy under ``macs <= level``
   (``--budget`` evaluations each); the Pareto front of all of them is onefit's front.
3. Baseline: plain L1-magnitude channel pruning of the same pre-trained model to the
   uniform widths 25/50/75 % (each coupled channel group keeps the channels with the
   largest L1 norm summed over the layers that write and read them, as Torch-Pruning
   does for residual groups), each pruned model fine-tuned alone for the same
   ``--finetune-epochs`` with the same optimiser. Each pruned model thus gets the
   budget the whole supernet got. Also reported: each pruned model fine-tuned for the
   supernet's epochs shared out over the three (at least one epoch).

Reports, per pruned model, whether some onefit sub-network has at most its MACs and at
least its accuracy (the onefit front dominates at that MACs level).

Usage:
    python benchmarks/convert_vs_pruning.py [--pretrain-epochs 3] [--finetune-epochs 3]
        [--json benchmarks/results/convert_vs_pruning.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import onefit
from onefit.convert.torchvision import build_torchvision_model
from onefit.data import DataSplits, load_dataset
from onefit.search.pareto import pareto_mask
from onefit.search.supernet import supernet_search
from onefit.training import TrainConfig, evaluate_config, evaluate_model
from onefit.training.bn import recalibrate_bn, resize
from onefit.training.trainer import _param_groups, cosine_schedule

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"
SIDE = 32
RATIOS = (0.25, 0.5, 0.75)


def load_data() -> DataSplits:
    if not MNIST.is_dir():
        raise SystemExit(f"{MNIST} not found: this benchmark needs the shared MNIST images")
    return load_dataset(MNIST, val_fraction=0.2, seed=0)


def batches(data: DataSplits, which: str, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = data.train_tensors() if which == "train" else data.val_tensors()
    x = resize(x, SIDE)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def fit(model: torch.nn.Module, data: DataSplits, config: TrainConfig, seed: int) -> None:
    """Plain supervised training with the trainer's optimiser, schedule and loss."""
    torch.manual_seed(seed)
    model.train()
    train = batches(data, "train", config.batch_size)
    train = [b for b in train if len(b[1]) == config.batch_size]
    steps = config.epochs * len(train)
    schedule = cosine_schedule(config.lr, steps, 0)
    optimizer = torch.optim.SGD(_param_groups(model, config.weight_decay), lr=config.lr,
                                momentum=config.momentum, nesterov=True)  # fmt: skip
    step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + epoch))
        for index in order.tolist():
            x, y = train[index]
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
            loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    model.eval()


def uniform(net: onefit.Supernet, ratio: float) -> onefit.ArchConfig:
    """Every width group at the choice nearest ``ratio`` of its channels, full depth."""
    choice: dict[str, Any] = dict(net.space.largest())
    if "w" in net.space:  # width_mode="global": one ratio for every group
        choice["w"] = min(net.space["w"].choices, key=lambda c: abs(c - ratio))
    for name in net.space.names:
        if name.startswith("w."):
            choices = net.space[name].choices
            full = max(choices)
            choice[name] = min(choices, key=lambda c: (abs(c / full - ratio), c))
    return net.space.validate(choice)


def run_arch(arch: str, data: DataSplits, args: argparse.Namespace) -> dict[str, Any]:
    base = TrainConfig(batch_size=args.batch_size, lr=args.lr, seed=0)
    val = batches(data, "val", 500)
    calibration = batches(data, "train", 200)
    result: dict[str, Any] = {"arch": arch}

    # 1. pre-train the plain torchvision model
    torch.manual_seed(0)
    model = build_torchvision_model(arch, data.num_classes, in_channels=1)
    start = time.perf_counter()
    fit(model, data, base.replace(epochs=args.pretrain_epochs), seed=1)
    result["pretrain_seconds"] = time.perf_counter() - start
    result["pretrained_accuracy"] = evaluate_model(model, val)["accuracy"]
    print(f"{arch}: pre-trained to {result['pretrained_accuracy']:.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "pretrained.pt"
        torch.save(model.state_dict(), weights)
        kwargs = {"model": arch, "weights": str(weights), "image_size": SIDE,
                  "width_mode": args.width_mode}  # fmt: skip

        # 2. onefit: elasticize + sandwich fine-tuning
        start = time.perf_counter()
        trained = onefit.train(
            supernet="torchvision", supernet_kwargs=kwargs, strategy="sandwich",
            strategy_kwargs=json.loads(args.strategy_kwargs), epochs=args.finetune_epochs,
            batch_size=args.batch_size, lr=args.finetune_lr,
            run_dir=str(Path(tmp) / "run"), data=data, progress=True, bn_batches=10, seed=0,
        )  # fmt: skip
        result["finetune_seconds"] = time.perf_counter() - start
        net = trained.supernet.eval()
        # onefit's front: the uniform-width sub-networks, the smallest, and constrained
        # searches (each evaluation: BN recalibrated, validation accuracy).
        points = []
        anchors = [(uniform(net, r), True) for r in (*RATIOS, 1.0)]
        for config, is_uniform in [*anchors, (net.space.smallest(), False)]:
            accuracy = evaluate_config(net, config, val, calibration, bn_batches=10)["accuracy"]
            points.append({"config": config.to_json(), "macs": net.macs(config),
                           "accuracy": accuracy, "uniform": is_uniform})  # fmt: skip
        # For each MACs level of a pruned model, a constrained LINAS search for the most
        # accurate sub-network within it: what a user specialising to that target does.
        start = time.perf_counter()
        for ratio in RATIOS:
            level = net.macs(uniform(net, ratio))  # the pruned model's MACs (same widths)
            searched = supernet_search(net, data, {"accuracy": "max", "macs": "min"},
                                       constraints=[f"macs <= {level}"], strategy="linas",
                                       budget=args.budget, seed=0)  # fmt: skip
            for evaluation in searched.history:
                if evaluation.ok:
                    metrics = evaluation.metrics
                    points.append({"config": evaluation.config.to_json(),
                                   "macs": int(metrics["macs"]),
                                   "accuracy": metrics["accuracy"], "uniform": False})  # fmt: skip
        result["search_seconds"] = time.perf_counter() - start
        points = list({p["config"]: p for p in reversed(points)}.values())[::-1]  # unique
        mask = pareto_mask(np.array([[p["macs"], -p["accuracy"]] for p in points]))
        front = sorted((p for p, m in zip(points, mask) if m), key=lambda p: p["macs"])
        result["onefit_points"] = points
        result["onefit_front"] = [{"macs": p["macs"], "accuracy": p["accuracy"]} for p in front]

        # 3. L1-magnitude channel pruning of the pre-trained model, fine-tuned alone
        pruner = onefit.elasticize(model, torch.zeros(2, 1, SIDE, SIDE), verbose=False,
                                   width_mode=args.width_mode)  # fmt: skip
        pruned = []
        for ratio in RATIOS:
            config = uniform(pruner, ratio)
            static = pruner.extract(config).train()
            recalibrate_bn(static, calibration, num_batches=10)
            before = evaluate_model(static, val)["accuracy"]
            # Also with the supernet's budget shared out over the pruned models.
            shared = copy.deepcopy(static)
            shared_epochs = max(1, round(args.finetune_epochs / len(RATIOS)))
            fit(shared, data, base.replace(epochs=shared_epochs, lr=args.finetune_lr), seed=2)
            shared_accuracy = evaluate_model(shared, val)["accuracy"]
            start = time.perf_counter()
            tune = base.replace(epochs=args.finetune_epochs, lr=args.finetune_lr)
            fit(static, data, tune, seed=2)
            seconds = time.perf_counter() - start
            accuracy = evaluate_model(static, val)["accuracy"]
            macs = pruner.macs(config)
            better = [p for p in points if p["macs"] <= macs and p["accuracy"] >= accuracy]
            same = next(p for p in points if p["uniform"] and p["config"] == config.to_json())
            pruned.append({
                "ratio": ratio, "macs": macs, "accuracy_before_finetune": before,
                "onefit_same_architecture_accuracy": same["accuracy"],
                "accuracy": accuracy, "finetune_seconds": seconds,
                "shared_budget_epochs": shared_epochs, "accuracy_shared_budget": shared_accuracy,
                "onefit_dominates_shared_budget": any(
                    p["macs"] <= macs and p["accuracy"] >= shared_accuracy for p in points),
                "onefit_dominates": bool(better),
                "onefit_best_at_or_below_macs": max(
                    (p["accuracy"] for p in points if p["macs"] <= macs), default=None),
            })  # fmt: skip
            print(f"  L1 {ratio:.2f}: {macs / 1e6:.2f} MMACs acc {accuracy:.4f} "
                  f"({shared_accuracy:.4f} with {shared_epochs} epochs); "
                  f"onefit dominates: {bool(better)}")  # fmt: skip
        result["l1_pruned"] = pruned
    result["dominates_everywhere"] = all(p["onefit_dominates"] for p in pruned)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", default="resnet18,mobilenet_v2")
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument(
        "--budget", type=int, default=30, help="sub-networks each constrained search evaluates"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05, help="pre-training learning rate")
    parser.add_argument(
        "--finetune-lr",
        type=float,
        default=0.01,
        help="fine-tuning learning rate (supernet and pruned models alike)",
    )
    parser.add_argument(
        "--strategy-kwargs",
        default="{}",
        help='JSON options of the sandwich strategy, e.g. {"num_random": 4}',
    )
    parser.add_argument(
        "--width-mode",
        default="group",
        choices=["group", "global"],
        help="one width per coupled channel group, or one ratio for all",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "data": data.describe(),
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "archs": [run_arch(a, data, args) for a in args.archs.split(",")],
    }
    for arch in results["archs"]:
        print(f"{arch['arch']}: onefit front dominates L1 pruning at every MACs level: "
              f"{arch['dominates_everywhere']}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
