"""``onefit report``: PNG figures and one self-contained HTML page for a run.

The page embeds its figures as data URIs, so it opens anywhere without onefit (or the
network): the Pareto front against each cost the search recorded (every evaluated
sub-network, the front, the exported picks marked), the training curves, a table of the
Pareto sub-networks and one of the exports with their model cards' figures.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onefit.deploy.card import ModelCard, ModelCardError
from onefit.deploy.picks import COST_METRICS, PickError, SearchRecord, load_search
from onefit.errors import UserError
from onefit.rundir import DEFAULT_SEARCH, RunDir
from onefit.search.store import StoreError
from onefit.search.supernet import run_task

COSTS = COST_METRICS
LABELS = {
    "latency_ms": "latency (ms, predicted)",
    "measured_latency_ms": "latency (ms)",
    "macs": "MACs",
    "params": "parameters",
    "accuracy": "validation accuracy",
    "peak_memory_bytes": "peak memory (bytes)",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read_exports(run_dir: Path) -> tuple[dict[str, ModelCard], list[str]]:
    """The run's model cards by folder (relative to the run), and why others were skipped."""
    cards, skipped = {}, []
    for path in RunDir(run_dir).model_cards():
        try:
            cards[str(path.parent.relative_to(run_dir))] = ModelCard.load(path)
        except ModelCardError as error:  # one stale or damaged card must not stop the page
            skipped.append(str(error))
    return cards, skipped


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = RunDir(run_dir).metrics_file
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pareto_figure(
    record: SearchRecord, cost: str, exports: Sequence[ModelCard], path: Path
) -> Path:
    """The search's quality metric (accuracy, mse, ...) against ``cost``: all evaluated,
    the Pareto front, exported picks."""
    plt = _pyplot()
    quality = record.quality or "accuracy"
    ok = [e for e in record.history if e.ok and cost in e.metrics and quality in e.metrics]
    # The Pareto set is a front only against the search's own objectives.
    on_front = record.pareto if cost in record.objectives else []
    front = sorted((e for e in on_front if cost in e.metrics), key=lambda e: e.metrics[cost])
    figure, axes = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    axes.scatter(
        [e.metrics[cost] for e in ok],
        [e.metrics[quality] for e in ok],
        s=14,
        color="tab:gray",
        alpha=0.55,
        label=f"evaluated ({len(ok)})",
    )
    axes.plot(
        [e.metrics[cost] for e in front],
        [e.metrics[quality] for e in front],
        "o-",
        color="tab:red",
        label=f"Pareto set ({len(front)})",
    )
    by_config = {json.dumps(dict(e.config), sort_keys=True): e for e in ok}
    for card in exports:
        match = by_config.get(json.dumps(dict(card.config), sort_keys=True))
        if match is not None:
            axes.scatter(
                [match.metrics[cost]],
                [match.metrics[quality]],
                marker="*",
                s=220,
                color="tab:blue",
                zorder=5,
            )
            axes.annotate(
                card.pick,
                (match.metrics[cost], match.metrics[quality]),
                textcoords="offset points",
                xytext=(6, -12),
                fontsize=8,
            )
    axes.set_xlabel(LABELS.get(cost, cost))
    axes.set_ylabel(LABELS.get(quality, f"validation {quality}"))
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def training_figure(
    metrics: list[dict[str, Any]], strategy: str, path: Path, metric: str = "accuracy"
) -> Path:
    """Training loss and the validation ``metric`` of the evaluated sub-networks per epoch."""
    plt = _pyplot()
    epochs = [m["epoch"] for m in metrics]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    left.plot(epochs, [m["train_loss"] for m in metrics], "o-", label=strategy)
    left.set_xlabel("epoch")
    left.set_ylabel("training loss (sum over sub-networks)")
    suffix = f"_{metric}"
    for key in sorted(k for k in metrics[-1] if k.startswith("val_") and k.endswith(suffix)):
        right.plot(epochs, [m.get(key) for m in metrics], "o-", label=key[4 : -len(suffix)])
    right.set_xlabel("epoch")
    right.set_ylabel(f"validation {metric}")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(f"training ({strategy})")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value / 1e6:.3g}M"
    return str(value)


# Marks the page once every figure has decoded (used by the browser test).
SCRIPT = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const drawn = images.every((img) => img.complete && img.naturalWidth > 0);
  document.body.dataset.rendered = drawn && images.length > 0 ? "yes" : "no";
});
</script>"""
STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f3f3f3; } img { max-width: 100%; margin: 0.5rem 0; }
code { background: #f3f3f3; padding: 0 0.2rem; }
</style>"""


def write_report(
    run_dir: str | Path, out: str | Path | None = None, *, search: str = DEFAULT_SEARCH
) -> Path:
    """Write ``RUN_DIR/report/index.html`` (and its PNG figures); returns the page's path.

    The Pareto figures and table show the run's search named ``search``.
    """
    run_dir = Path(run_dir)
    paths = RunDir(run_dir)
    if not paths.config_file.is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.json from onefit train)")
    folder = Path(out) if out else paths.report_dir
    folder.mkdir(parents=True, exist_ok=True)
    settings = paths.settings()
    exports, skipped = _read_exports(run_dir)
    metrics = _read_metrics(run_dir)
    sections = [
        f"<h1>onefit report: {html.escape(run_dir.name)}</h1>",
        f"<p>Run <code>{html.escape(str(run_dir.resolve()))}</code>: supernet "
        f"<code>{html.escape(str(settings.get('supernet', '?')))}</code>, strategy "
        f"<code>{html.escape(str(settings.get('strategy', '?')))}</code>, "
        f"{settings.get('epochs', '?')} epochs on "
        f"<code>{html.escape(str(settings.get('dataset', '?')))}</code>.</p>",
    ]
    unreadable = None
    try:
        record: SearchRecord | None = load_search(run_dir, search)
    except PickError:  # no search of that name: nothing to show
        record = None
    except StoreError as error:  # a damaged or foreign store is shown, never "no results"
        record, unreadable = None, str(error)
    if record is not None and record.history:
        quality = record.quality or "accuracy"
        sections.append("<h2>Pareto front</h2>")
        recorded = set().union(*(e.metrics for e in record.history if e.ok))
        for cost in [c for c in COSTS if c in recorded]:
            figure = pareto_figure(
                record, cost, list(exports.values()), folder / f"pareto_{cost}.png"
            )
            sections.append(_image(figure, f"{quality} vs {cost}"))
        shown = [c for c in (quality, *COSTS) if c in recorded]
        sign = -1.0 if record.objectives.get(quality) != "min" else 1.0
        rows = [
            [e.config.to_json()[:80], *(_fmt(e.metrics[c]) for c in shown)]
            for e in sorted(record.pareto, key=lambda e: sign * e.metrics.get(quality, 0))
        ]
        failed = sum(not e.ok for e in record.history)
        sections.append(
            f"<h2>Pareto sub-networks ({len(record.pareto)} of "
            f"{len(record.history)} evaluated, {failed} failed)</h2>"
        )
        sections.append(_table(["config", *shown], rows))
    elif unreadable is not None:
        sections.append(f"<p>Search results unreadable: {html.escape(unreadable)}</p>")
    else:
        sections.append("<p>No search results yet: run <code>onefit search</code>.</p>")
    if metrics:
        sections.append("<h2>Training</h2>")
        # The curves show the primary metric of the task the run trained for.
        metric = run_task(run_dir).primary_metric
        figure = training_figure(
            metrics, str(settings.get("strategy", "?")), folder / "training.png", metric
        )
        sections.append(_image(figure, "training curves"))
    if exports:
        rows = [
            [
                c.pick,
                c.format,
                _fmt(c.evaluation.fp32),
                _fmt(c.evaluation.int8 if c.evaluation.int8 is not None else ""),
                _fmt(c.latency.median_ms),
                c.latency.profile.runtime,
                _fmt(c.macs),
                _fmt(c.params),
                folder_name,
            ]
            for folder_name, c in exports.items()
        ]
        metric = next(iter(exports.values())).evaluation.metric
        sections.append("<h2>Exported models</h2>")
        sections.append(
            _table(
                [
                    "pick",
                    "format",
                    # One primary metric per run (the task's); accuracy for classification.
                    metric,
                    f"INT8 {metric}",
                    "latency ms",
                    "runtime",
                    "MACs",
                    "params",
                    "folder",
                ],
                rows,
            )
        )
    if skipped:
        sections.append("<h2>Exports not shown</h2>")
        sections.append("".join(f"<p><code>{html.escape(why)}</code></p>" for why in skipped))
    page = folder / "index.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>onefit report</title>"
        + STYLE
        + "</head><body>"
        + "\n".join(sections)
        + SCRIPT
        + "</body></html>\n"
    )
    return page
