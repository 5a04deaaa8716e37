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
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onefit.deploy.card import ModelCard, ModelCardError, read_export
from onefit.deploy.export import clean_stale_exports
from onefit.deploy.picks import COST_METRICS, SearchRecord, load_search
from onefit.errors import UserError
from onefit.rundir import DEFAULT_SEARCH, RunDir, RunDirError
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


def _text(value: Any) -> str:
    """``value`` as matplotlib draws it literally ("$" starts math text otherwise)."""
    return str(value).replace("$", r"\$")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read_exports(
    run_dir: Path, run_id: str | None = None
) -> tuple[dict[str, ModelCard], list[str]]:
    """The run's model cards by folder (relative to the run), each with its model files
    verified against the card's SHA-256, and why others were skipped (a damaged card or
    model file, an export of another run). Work folders an interrupted export left are
    removed first."""
    clean_stale_exports(RunDir(run_dir).exports_dir)
    cards, skipped = {}, []
    for path in RunDir(run_dir).model_cards():
        try:
            card = read_export(path.parent)
        except ModelCardError as error:  # one stale or damaged card must not stop the page
            skipped.append(str(error))
            continue
        if run_id is not None and card.source_run_id not in (None, run_id):
            skipped.append(
                f"{path}: exported from another run (run id {card.source_run_id}, this run "
                f"{run_id}); it was copied here from elsewhere"
            )
            continue
        cards[str(path.parent.relative_to(run_dir))] = card
    return cards, skipped


def _number(value: Any) -> bool:
    """A finite JSON number (an integer of any size is one; a bool is not)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def read_metrics(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a ``metrics.jsonl`` the report can plot, and one warning per row it
    cannot (naming the file and the line): a line that is not a JSON object, an
    ``epoch`` that is not a non-negative integer, a ``train_loss`` that is missing or
    not a finite number, a ``val_*`` figure that is not a finite number. Those rows are
    left out of the curves, and the report shows the warnings.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "metrics.jsonl")
        >>> _ = open(path, "w").write('{"epoch": 1, "train_loss": 0.5}\\n{"epoch": 2}\\n')
        >>> rows, warnings = read_metrics(path)
        >>> len(rows), warnings[0].endswith("line 2: no 'train_loss' (a finite number)")
        (1, True)
    """
    path = Path(path)
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError) as error:
        return [], [f"{path}: cannot be read as UTF-8 text ({error})"]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line, parse_constant=lambda name: float("nan"))
        except (ValueError, RecursionError) as error:
            warnings.append(f"{where}: not JSON ({error})")
            continue
        if not isinstance(row, dict):
            warnings.append(f"{where}: not a JSON object of metrics")
            continue
        epoch = row.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            warnings.append(f"{where}: 'epoch' is {epoch!r}, a non-negative integer expected")
            continue
        if "train_loss" not in row:
            warnings.append(f"{where}: no 'train_loss' (a finite number)")
            continue
        if not _number(row["train_loss"]):
            loss = row["train_loss"]
            warnings.append(f"{where}: 'train_loss' is {loss!r}, a finite number expected")
            continue
        bad = [k for k, v in row.items() if str(k).startswith("val_") and not (
            v is None or _number(v))]  # fmt: skip
        if bad:
            warnings.append(f"{where}: {bad[0]!r} is {row[bad[0]]!r}, a finite number expected")
            continue
        rows.append(row)
    return rows, warnings


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
                _text(card.pick),
                (match.metrics[cost], match.metrics[quality]),
                textcoords="offset points",
                xytext=(6, -12),
                fontsize=8,
            )
    axes.set_xlabel(_text(LABELS.get(cost, cost)))
    axes.set_ylabel(_text(LABELS.get(quality, f"validation {quality}")))
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
    left.plot(epochs, [m["train_loss"] for m in metrics], "o-", label=_text(strategy))
    left.set_xlabel("epoch")
    left.set_ylabel("training loss (sum over sub-networks)")
    suffix = f"_{metric}"
    for key in sorted(k for k in metrics[-1] if k.startswith("val_") and k.endswith(suffix)):
        values = [m.get(key) for m in metrics]
        right.plot(epochs, values, "o-", label=_text(key[4 : -len(suffix)]))
    right.set_xlabel("epoch")
    right.set_ylabel(_text(f"validation {metric}"))
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(_text(f"training ({strategy})"))
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
    run_id = paths.run_id() if paths.identity_file.exists() else None
    exports, skipped = _read_exports(run_dir, run_id)
    metrics, metric_warnings = read_metrics(paths.metrics_file)

    def setting(name: str) -> str:
        return html.escape(str(settings.get(name, "?")))

    sections = [
        f"<h1>onefit report: {html.escape(run_dir.name)}</h1>",
        f"<p>Run <code>{html.escape(str(run_dir.resolve()))}</code>: supernet "
        f"<code>{setting('supernet')}</code>, strategy <code>{setting('strategy')}</code>, "
        f"{setting('epochs')} epochs on <code>{setting('dataset')}</code>.</p>",
    ]
    if run_id is not None:
        sections.append(f"<p>Run id <code>{html.escape(run_id)}</code>.</p>")
    record: SearchRecord | None = None
    search_problem = None
    try:
        paths.find_search(search)
    except RunDirError:
        pass  # no search yet
    else:
        try:
            record = load_search(run_dir, search)
        except UserError as error:  # a damaged or foreign store: said, not hidden
            search_problem = str(error)
    if search_problem is not None:
        sections.append("<h2>Search results not shown</h2>")
        sections.append(f"<p><code>{html.escape(search_problem)}</code></p>")
    elif record is not None and record.history:
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
    else:
        sections.append("<p>No search results yet: run <code>onefit search</code>.</p>")
    if metrics:
        sections.append("<h2>Training</h2>")
        # The curves show the primary metric of the task the run trained for.
        try:
            metric = run_task(run_dir).primary_metric
        except UserError as error:  # an unknown task in config.json: plot accuracy, say so
            metric = "accuracy"
            metric_warnings.append(f"{paths.config_file}: {error}; curves show accuracy")
        figure = training_figure(
            metrics, str(settings.get("strategy", "?")), folder / "training.png", metric
        )
        sections.append(_image(figure, "training curves"))
    if metric_warnings:
        sections.append("<h2>Training rows not shown</h2>")
        sections.append(
            "".join(f"<p><code>{html.escape(why)}</code></p>" for why in metric_warnings)
        )
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
