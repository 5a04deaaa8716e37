"""The conversion report: every layer, what became elastic in it, and if not, why."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from onefit.convert.tracing import describe

if TYPE_CHECKING:
    from onefit.convert.supernet import ConvertedSupernet


@dataclass(frozen=True)
class ReportRow:
    layer: str  # module name, or the graph node of a function call
    op: str
    elastic: str  # the dimensions this layer follows, "" when none
    static_because: str  # why it (or part of it) stays fixed, "" when nothing does


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`onefit.elasticize` did to each layer; ``print(report)`` shows a table."""

    model: str
    rows: tuple[ReportRow, ...]
    dimensions: dict[str, list[Any]]

    @classmethod
    def of(cls, model: str, rows: list[ReportRow], space: Any) -> ConversionReport:
        """A report of ``rows`` for a supernet with search space ``space``."""
        dims = {name: list(space[name].choices) for name in space.names}
        return cls(model=model, rows=tuple(rows), dimensions=dims)

    @property
    def elastic_layers(self) -> list[str]:
        return [row.layer for row in self.rows if row.elastic]

    @property
    def static_layers(self) -> dict[str, str]:
        """Layers that stay entirely fixed, with the reason."""
        return {row.layer: row.static_because for row in self.rows if not row.elastic}

    def summary(self) -> str:
        kinds = {"w": 0, "d": 0, "k": 0}
        for name in self.dimensions:
            prefix = name.split(".")[0]
            if prefix in kinds:
                kinds[prefix] += 1
        weighty = [r for r in self.rows if r.op not in _QUIET]
        elastic = sum(1 for r in weighty if r.elastic)
        return (
            f"{self.model}: {elastic} of {len(weighty)} layers elastic; {kinds['w']} width "
            f"groups, {kinds['d']} depth chains, {kinds['k']} elastic kernels"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dimensions": self.dimensions,
            "layers": [asdict(row) for row in self.rows],
        }

    def __str__(self) -> str:
        header = ("layer", "op", "elastic", "static because")
        table = [header] + [(r.layer, r.op, r.elastic, r.static_because) for r in self.rows]
        widths = [min(48, max(len(row[i]) for row in table)) for i in range(3)]
        lines = [self.summary()]
        for row in table:
            cells = [row[i].ljust(widths[i]) for i in range(3)] + [row[3]]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)


# Parameter-free layers that simply follow their input; shown, but not counted.
_QUIET = {
    "ReLU",
    "ReLU6",
    "Hardswish",
    "Hardsigmoid",
    "SiLU",
    "GELU",
    "Sigmoid",
    "Tanh",
    "Identity",
    "Dropout",
    "StochasticDepth",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "Flatten",
    "add",
    "mul",
    "flatten",
    "permute",
}


def build_report(net: ConvertedSupernet) -> ConversionReport:
    """One row per layer and per addition of ``net``'s graph."""
    analysis = net.analysis
    block_dim = {}
    for dim, adds in net.depth_dims.items():
        for index, add in enumerate(adds):
            block_dim[add] = f"{dim} (block {index + 1} of {len(adds)})"
    in_block = {}
    for block in analysis.blocks:
        for node in block.branch:
            in_block[node] = block_dim.get(block.add, "")
    kernels = {module: dim for dim, module in net.kernel_dims.items()}
    rows = []
    for node in net.body.graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        shape_only = "tensor_meta" not in node.meta and node.name not in analysis.unsupported
        if node.op != "call_module" and shape_only:
            continue  # shape arithmetic (x.shape, getitem): no channels of its own
        layer = net.layers.get(node.name)
        op = describe(node, net.body)
        if op == "SlicedParameter" and layer is not None:
            op = "parameter"
        if op == "RuledLayer" and layer is not None:
            op = type(net.body.get_submodule(layer.name).layer).__name__
        elastic: list[str] = []
        static: list[str] = []
        if layer is not None:
            groups = [layer.out_group] if layer.kind == "conv" else [layer.in_group]
            coupled = layer.rule is not None and layer.rule.coupled
            if layer.kind in ("conv", "linear", "other") or (
                layer.kind == "custom" and not coupled
            ):
                groups = [layer.in_group, layer.out_group]
            for side, group in zip(("in", "out"), groups):
                name = net.width_dims.get(group) if group is not None else None
                label = side if len(groups) == 2 else "channels"
                if name is not None:
                    elastic.append(f"{label}: {name}")
                elif group is not None:
                    why = "; ".join(analysis.static_reasons.get(group, ["fixed"]))
                    static.append(f"{label}: {why}")
            if layer.name in kernels:
                elastic.append(f"kernel: {kernels[layer.name]}")
        elif node.name in analysis.unsupported:
            static.append(f"unsupported: {analysis.unsupported[node.name]}")
        if node.name in block_dim:
            elastic.append(f"depth: {block_dim[node.name]}")
        elif node.name in analysis.not_skippable:
            static.append(f"not skippable: {analysis.not_skippable[node.name]}")
        elif in_block.get(node.name):
            elastic.append(f"skipped with {in_block[node.name].split(' ')[0]}")
        name = (
            layer.name
            if layer is not None
            else str(node.target)
            if node.op == "call_module"
            else node.name
        )
        rows.append(ReportRow(name, op, ", ".join(elastic), "; ".join(static)))
    return ConversionReport.of(net.model_name, rows, net.space)
