"""The ``onefit`` command line.

One handler (:class:`OnefitGroup`) turns every exception into an exit status: a user
mistake (an unknown supernet, a bad option value, a missing file) ends with one line on
stderr and exit status 2, never a traceback; any other failure prints one line and the
path of a log holding the traceback, exit status 1; Ctrl-C exits with 130.

Example:
    $ onefit demo                      # the whole pipeline on the embedded data
    $ onefit list
    $ onefit check --supernet resnet --image-size 32 --samples 5
    $ onefit train --strategy sandwich --epochs 5 --run-dir runs/digits
    $ onefit profile --runtime onnxruntime --threads 1 --out lut.json
    $ onefit search runs/digits --objective accuracy:max --objective macs:min --budget 40
    $ onefit export runs/digits --pick "macs <= 5e6" --format onnx --int8
    $ onefit report runs/digits
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

import onefit
from onefit.data import list_recipes
from onefit.deploy import export
from onefit.deploy.export import FORMATS as EXPORT_FORMATS
from onefit.deploy.quickstart import DemoSettings, run_demo
from onefit.deploy.report import write_report
from onefit.errors import Interrupted, OnefitError, UserError
from onefit.metrics import get_runtime, list_runtimes, measure_latency
from onefit.metrics.device import DeviceProfile
from onefit.predictors import prediction_metrics
from onefit.profiling import LatencyTable, build_latency_table
from onefit.rundir import DEFAULT_SEARCH, STORE_FILE, RunDir
from onefit.search.store import ResultStore
from onefit.search.supernet import search_run
from onefit.training import Trainer
from onefit.training.config import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_SEED,
    TrainConfig,
    parse_setting,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

console = Console()
F = TypeVar("F", bound=Callable[..., Any])


# Exceptions that mean bad input the user can fix: onefit.errors.UserError and its kinds
# (a wrong type, an optional package not installed). Anything else, a plain ValueError
# from deep inside included, is an internal error: reported as a bug, traceback logged.
USER_ERRORS: tuple[type[Exception], ...] = (UserError,)
MAX_BUDGET = 10**7  # sub-networks a search evaluates
_RUN_DIR = "onefit.run_dir"  # ctx.meta key: where a command keeps its files
_ARGV = "onefit.argv"


class _UserFailure(click.ClickException):
    """A user error as click shows it: ``Error: <message>`` on stderr, exit status 2.

    (An internal error is a plain ``click.ClickException``: the same line, exit status 1.)
    """

    exit_code = 2


class OnefitGroup(click.Group):
    """The ``onefit`` group; its :meth:`invoke` is the one place errors become exit statuses.

    Commands raise what the library raises and catch nothing to report it:

    * a user error (see :data:`USER_ERRORS`): ``Error: <message>``, exit status 2;
    * click's own errors, as click shows them (usage errors exit 2);
    * :class:`onefit.errors.Interrupted` (a run paused with its state saved): its
      message, exit status 130, as is ``KeyboardInterrupt``;
    * anything else: ``Error: <message>``, the path of a log file holding the full
      traceback (RUN_DIR/logs/ when the command has a run directory, else
      ``~/.cache/onefit/logs/``), exit status 1.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGV] = list(args)  # for the log of an internal error
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click reports these itself (Exit and Abort are RuntimeErrors)
        except Interrupted as error:
            click.echo(str(error))
            ctx.exit(130)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except USER_ERRORS as error:
            raise _UserFailure(str(error)) from None
        except Exception as error:
            raise click.ClickException(_internal_error(ctx, error)) from None


def _remember_run_dir(path: str | Path) -> None:
    """Note the current command's run directory: the log of an internal error goes there."""
    click.get_current_context().meta[_RUN_DIR] = Path(path)


def _internal_error(ctx: click.Context, error: Exception) -> str:
    """Write ``error``'s traceback to a log file; return what to show: the error in one
    line, then the log's path."""
    command = ctx.invoked_subcommand or "onefit"
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    # A onefit failure explains itself; anything else is a bug to report.
    if isinstance(error, OnefitError):
        message = text or type(error).__name__
    else:
        message = f"{type(error).__name__}: {text} (an internal error of onefit; please report it)"
    argv = " ".join(ctx.meta.get(_ARGV, []))
    report = (
        f"onefit {argv}\nonefit {onefit.__version__}, torch {torch.__version__}, "
        f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n\n"
        + "".join(traceback.format_exception(type(error), error, error.__traceback__))
    )
    name = f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    run_dir = ctx.meta.get(_RUN_DIR)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "onefit"
    folders = [run_dir / "logs"] if run_dir is not None and run_dir.is_dir() else []
    folders += [cache / "logs", Path(tempfile.gettempdir()) / "onefit-logs"]
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(report)
        except OSError:
            continue
        return f"{message}\nThe full traceback is in {folder / name}"
    return f"{message}\n(no log folder was writable; the traceback follows)\n{report}"


def _parse_options(pairs: tuple[str, ...], param: str = "--option") -> dict[str, Any]:
    """``("width_mult=1.2", "resolutions=[24,32]")`` -> keyword arguments (values as JSON)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not all(part.isidentifier() for part in key.split(".")):
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=param)
        try:
            options[key] = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            options[key] = text  # a bare word is a string
    return options


def _supernet_options(*, image_size: int, in_channels: int, num_classes: int) -> Callable[[F], F]:
    """The options that choose and size a supernet family, with these defaults."""

    def decorate(command: F) -> F:
        for option in reversed([
            click.option("--supernet", "name", default="mobilenetv3", show_default=True,
                         help="Family."),
            click.option("--image-size", default=image_size, show_default=True,
                         type=click.IntRange(1, MAX_IMAGE_SIZE), help="Input side in pixels."),
            click.option("--in-channels", default=in_channels, show_default=True,
                         type=click.IntRange(1, 4096), help="Input image channels."),
            click.option("--num-classes", default=num_classes, show_default=True,
                         type=click.IntRange(1, 1_000_000), help="Classifier outputs."),
            click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
                         help="Extra supernet constructor argument (value parsed as JSON); "
                         "repeatable."),
        ]):  # fmt: skip
            command = option(command)
        return command

    return decorate


def _build_supernet(
    name: str, image_size: int, in_channels: int, num_classes: int, options: tuple[str, ...]
) -> onefit.Supernet:
    """The supernet the options of :func:`_supernet_options` describe, in eval mode."""
    return onefit.create_supernet(
        name,
        image_size=image_size,
        in_channels=in_channels,
        num_classes=num_classes,
        **_parse_options(options),
    ).eval()


@click.group(cls=OnefitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(onefit.__version__, prog_name="onefit")
@click.option(
    "--config", "config_file", metavar="FILE",
    help="TOML/JSON/YAML file with a table per command ([train], [search], [export], ...) "
    "whose keys are that command's options; flags on the command line override them.",
)  # fmt: skip
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """onefit: train one elastic supernet once, then specialize it for every device."""
    if config_file is None:
        return
    data = _load_file(config_file)
    defaults: dict[str, dict[str, Any]] = {}
    for command, table in data.items():
        if command not in cli.commands or not isinstance(table, dict):
            raise click.BadParameter(
                f"{config_file}: [{command}] is not a command's table; commands: "
                f"{', '.join(sorted(cli.commands))}",
                param_hint="--config",
            )
        if command == "train":  # train reads its table itself: every TrainConfig field
            continue
        # Keys are the command's option names as typed (budget, batch-size or batch_size).
        names = {}
        for param in cli.commands[command].params:
            for flag in getattr(param, "opts", []):
                if flag.startswith("--"):
                    names[flag[2:].replace("-", "_")] = param.name
        unknown = sorted(k for k in table if k.replace("-", "_") not in names)
        if unknown:
            raise click.BadParameter(
                f"{config_file}: [{command}] has unknown option(s) {unknown}; "
                f"known: {sorted(names)}",
                param_hint="--config",
            )
        defaults[command] = {names[k.replace("-", "_")]: v for k, v in table.items()}
    ctx.default_map = defaults
    ctx.obj = {"config_file": config_file, "has_train_table": "train" in data}


@cli.command("list")
def list_command() -> None:
    """List supernets, training strategies, datasets, runtimes and search strategies."""
    table = Table(title="supernets")
    for column in ("name", "dimensions", "configs (raw)", "largest MMACs (default input)"):
        table.add_column(column)
    for name in onefit.list_supernets():
        try:
            net = onefit.create_supernet(name)
        except ImportError as error:  # a family whose optional dependency is missing
            table.add_row(name, "-", "-", f"({error})")
            continue
        table.add_row(
            name,
            str(len(net.space.names)),
            f"{net.space.size:.3g}",
            f"{net.macs(net.space.largest()) / 1e6:.0f}",
        )
    console.print(table)
    console.print("training strategies: " + ", ".join(onefit.list_strategies()))
    console.print("datasets and formats: " + ", ".join(onefit.list_datasets()))
    console.print("augmentation recipes: " + ", ".join(list_recipes()))

    runtimes = [f"{n}{'' if get_runtime(n).available() else ' (not installed)'}"
                for n in list_runtimes()]  # fmt: skip
    console.print("latency runtimes: " + ", ".join(runtimes))
    console.print("search strategies: " + ", ".join(onefit.list_search_strategies()))


@cli.command("check")
@_supernet_options(image_size=28, in_channels=1, num_classes=10)
@click.option("--samples", default=8, show_default=True, type=click.IntRange(0, 10_000),
              help="Random sub-networks to extract.")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED),
              help="Seed for weights and sampling.")  # fmt: skip
def check(
    name: str,
    image_size: int,
    in_channels: int,
    num_classes: int,
    samples: int,
    seed: int,
    options: tuple[str, ...],
) -> None:
    """Build a supernet, extract sub-networks, and check each against the supernet.

    For the smallest, the largest and SAMPLES random configs: extracts the static model,
    compares its output with the supernet's (max abs difference), and prints its
    analytic MACs and parameters next to the ones measured on the extracted model.
    """
    torch.manual_seed(seed)
    net = _build_supernet(name, image_size, in_channels, num_classes, options)
    space = net.space
    console.print(
        f"[bold]{name}[/]: {len(space.names)} dimensions, {space.size:.3g} configs, "
        f"input {in_channels}x{image_size}x{image_size}, {num_classes} classes"
    )
    configs = [space.smallest(), *space.sample_many(samples, seed=seed), space.largest()]
    table = Table(title=f"extracted {name} sub-networks")
    table.add_column("config", no_wrap=True)
    for column in ("MMACs", "params", "measured = analytic", "max |diff|", "extract ms"):
        table.add_column(column, justify="right")
    failures = 0
    for config in track(configs, description="extracting", console=console, transient=True):
        start = time.perf_counter()
        static = net.extract(config)
        extract_ms = (time.perf_counter() - start) * 1e3
        net.set_active(config)
        x = net.example_input(2, config)
        with torch.no_grad():
            diff = (net(x) - static(x)).abs().max().item()
        analytic = net.cost(config)
        measured = onefit.count(static, net.input_shape(config), dtype=net.input_dtype)
        same = measured == analytic and diff <= 1e-5
        failures += not same
        table.add_row(
            _describe_config(config),
            f"{analytic.macs / 1e6:.2f}",
            f"{analytic.params:,}",
            "yes" if measured == analytic else f"no ({measured.macs}, {measured.params})",
            f"{diff:.1e}",
            f"{extract_ms:.1f}",
        )
    console.print(table)
    if failures:
        raise click.ClickException(f"{failures} sub-network(s) did not match the supernet")
    console.print(f"all {len(configs)} sub-networks match the supernet exactly")


def _read_config_file(path: str) -> dict[str, Any]:
    """A TOML, JSON or YAML file of TrainConfig fields (a ``[train]`` table is also accepted)."""
    data = _load_file(path)
    if "train" in data:
        if not isinstance(data["train"], dict):
            raise UserError(f"{path}: [train] must be a table of training settings")
        data = data["train"]
    return data


def _load_file(path: str) -> dict[str, Any]:
    """The table a TOML, JSON or YAML settings file holds; a ``UserError`` naming the file
    (and the line and column of a syntax error) for anything else."""
    file = Path(path)
    if not file.is_file():
        raise click.BadParameter(f"{path}: no such file", param_hint="--config")
    if file.suffix not in (".toml", ".json", ".yaml", ".yml"):
        raise click.BadParameter(
            f"{path}: unknown config format {file.suffix!r}; use .toml, .json or .yaml",
            param_hint="--config",
        )
    try:
        raw = file.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{path}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); "
            "save the settings file as UTF-8"
        ) from None
    try:
        if file.suffix == ".toml":
            data = tomllib.loads(text)
        elif file.suffix == ".json":
            data = json.loads(text)
        else:
            data = _load_yaml(path, text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML: {_one_line(error)}") from None
    except json.JSONDecodeError as error:
        raise UserError(
            f"{path}: not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a settings file") from None
    if not isinstance(data, dict):
        kind = "nothing" if data is None else f"a {type(data).__name__}"
        raise UserError(f"{path}: expected a table of settings at the top, got {kind}")
    _check_keys(path, data)
    return data


def _load_yaml(path: str, text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise click.BadParameter(
            f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use TOML/JSON",
            param_hint="--config",
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or _one_line(error)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML: {problem}{where}") from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _check_keys(path: str, table: dict[Any, Any], where: str = "") -> None:
    """Every key of the settings file (and of its tables) is text."""
    for key, value in table.items():
        if not isinstance(key, str):
            raise UserError(
                f"{path}: setting name {key!r}{where and ' in [' + where + ']'} is not text"
            )
        if isinstance(value, dict):
            _check_keys(path, value, f"{where}.{key}" if where else key)


def _apply_setting(settings: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (dots reach into dict settings: ``strategy_kwargs.num_random``)."""
    *parents, leaf = key.split(".")
    target = settings
    for parent in parents:
        target = target.setdefault(parent, {})
        if not isinstance(target, dict):
            raise click.BadParameter(f"{parent!r} is not a table of settings", param_hint="--set")
    target[leaf] = value


@cli.command()
@click.option("--config", "config_file", metavar="FILE", help="TOML/JSON/YAML file of settings.")
@click.option("--supernet", help="Supernet family (default mobilenetv3).")
@click.option(
    "--model", "model_path", metavar="PACKAGE.MODULE:FUNCTION",
    help="Your own model: a function returning an nn.Module, converted with elasticize "
    "(family 'model'; the current folder is importable).",
)  # fmt: skip
@click.option("--model-kwargs", metavar="JSON", help="Keyword arguments for --model's function.")
@click.option("--input-shape", metavar="C,H,W",
              help="One input of --model (default: the data's channels and side).")  # fmt: skip
@click.option("--dataset", help="Dataset name or folder (default digits).")
@click.option("--strategy", help="Training strategy: " + ", ".join(onefit.list_strategies()) + ".")
@click.option("--epochs", type=click.IntRange(0, MAX_EPOCHS))
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True))
@click.option("--seed", type=click.IntRange(0, MAX_SEED))
@click.option("--run-dir", help="Where checkpoints, metrics and the config go.")
@click.option(
    "--set", "assignments", multiple=True, metavar="KEY=VALUE",
    help="Any setting, its value read as the setting's type (text settings keep the text; "
    "lists and tables as JSON; dotted keys reach into tables); repeatable.",
)  # fmt: skip
@click.option("--no-resume", is_flag=True, help="Ignore an existing checkpoint in the run dir.")
@click.option("--stop-after-steps", type=click.IntRange(min=1),
              help="Pause after this many steps (checkpointed).")  # fmt: skip
@click.pass_context
def train(
    ctx: click.Context,
    config_file: str | None,
    assignments: tuple[str, ...],
    no_resume: bool,
    stop_after_steps: int | None,
    model_path: str | None,
    model_kwargs: str | None,
    input_shape: str | None,
    **flags: Any,
) -> None:
    """Train a supernet once; resumes from the run dir's checkpoint.

    Settings come from defaults, then --config, then --set, then the flags. The resolved
    configuration is printed first and saved as RUN_DIR/config.json; metrics go to
    RUN_DIR/metrics.jsonl and the checkpoint to RUN_DIR/checkpoints/last.pt. Ctrl-C saves
    a checkpoint; running the same command again continues exactly where it stopped.
    Under torchrun, every process trains on its share of each batch.
    """

    shared = ctx.obj or {}
    if config_file is None and shared.get("has_train_table"):
        config_file = shared["config_file"]  # the [train] table of `onefit --config FILE`
    settings: dict[str, Any] = _read_config_file(config_file) if config_file else {}
    for pair in assignments:
        ((key, value),) = _parse_options((pair,), param="--set").items()
        if "." not in key:  # a top-level setting: its text as the field's type reads it
            value = parse_setting(key, pair.partition("=")[2])
        _apply_setting(settings, key, value)
    for key, value in flags.items():
        if value is not None:
            settings[key] = value
    if model_path is not None:
        settings["supernet"] = "model"
        kwargs = settings.setdefault("supernet_kwargs", {})
        kwargs["factory"] = model_path
        if model_kwargs is not None:
            kwargs["factory_kwargs"] = _parse_json(model_kwargs, "--model-kwargs")
        if input_shape is not None:
            kwargs["input_shape"] = _parse_shape(input_shape)
    elif model_kwargs is not None or input_shape is not None:
        raise click.UsageError("--model-kwargs and --input-shape go with --model")
    config = TrainConfig.from_dict(settings)
    _remember_run_dir(config.run_dir)
    trainer = Trainer(config)
    if trainer.dist.is_main:
        console.print_json(json.dumps(trainer.resolved()))
    result = trainer.fit(resume=not no_resume, stop_after_steps=stop_after_steps)
    if not trainer.dist.is_main:
        return
    if result.interrupted:
        console.print(
            f"paused at step {result.steps}/{result.total_steps} ({result.interrupted}); "
            f"checkpoint {result.checkpoint}. Run the same command to continue."
        )
        if result.interrupted in ("SIGINT", "SIGTERM"):
            raise SystemExit(130)
        return
    last = result.history[-1] if result.history else {}
    summary = ", ".join(f"{k[4:]} {v:.4f}" for k, v in last.items() if k.startswith("val_"))
    summary = summary or "not trained (epochs 0): the initial weights, as given"
    console.print(f"done: {result.steps} steps; {summary}; checkpoint {result.checkpoint}")


@cli.command()
@_supernet_options(image_size=224, in_channels=3, num_classes=1000)
@click.option("--run", "run_dir", help="Profile the supernet of this training run instead.")
@click.option("--runtime", default="eager", show_default=True, help="eager, onnxruntime, compile.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option(
    "--threads", type=click.IntRange(1, 1024), help="Intra-op threads (default: torch's)."
)
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(1, 4096))
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(0, 100_000),
              help="Untimed runs per unit.")  # fmt: skip
@click.option("--repeats", default=30, show_default=True, type=click.IntRange(1, 100_000),
              help="Timed runs per unit.")  # fmt: skip
@click.option("--check", default=5, show_default=True, type=click.IntRange(0, 10_000),
              help="Random configs to measure whole.")  # fmt: skip
@click.option("--out", default="latency_table.json", show_default=True, help="Table file (JSON).")
def profile(
    name: str,
    image_size: int,
    in_channels: int,
    num_classes: int,
    options: tuple[str, ...],
    run_dir: str | None,
    runtime: str,
    device: str,
    threads: int | None,
    batch_size: int,
    warmup: int,
    repeats: int,
    check: int,
    out: str,
) -> None:
    """Build a latency lookup table of a supernet on this device and save it as JSON.

    Measures every distinct unit (stem, block configuration, head) once on the runtime;
    a config's predicted latency is the sum of its units. Then measures the smallest,
    the largest and CHECK random sub-networks whole and prints predicted vs measured.
    """

    if run_dir is not None:
        _remember_run_dir(run_dir)
        net = onefit.load_supernet(run_dir)
    else:
        net = _build_supernet(name, image_size, in_channels, num_classes, options)
    settings = dict(runtime=runtime, device=device, batch_size=batch_size, threads=threads,
                    warmup=warmup, repeats=repeats)  # fmt: skip
    table = build_latency_table(net, **settings)  # type: ignore[arg-type]
    table.save(out)
    console.print(
        f"{len(table.entries)} units measured in {table.settings['profiling_seconds']:.1f} s "
        f"on {table.profile.name} ({table.profile.device_name}); saved {out}"
    )
    space = net.space
    configs = [space.smallest(), *space.sample_many(check, seed=0), space.largest()]
    results = Table(title="predicted (sum of units) vs measured whole, ms")
    for column in ("config", "MMACs", "predicted", "measured (IQR)", "error"):
        results.add_column(column, justify="right")
    predicted, measured = [], []
    for config in track(configs, description="checking", console=console, transient=True):
        model = net.extract(config)
        result = measure_latency(model, net.input_shape(config), profile=table.profile,
                                 **settings)  # type: ignore[arg-type]  # fmt: skip
        predicted.append(table.predict(config))
        measured.append(result.median_ms)
        results.add_row(
            _describe_config(config),
            f"{net.macs(config) / 1e6:.1f}",
            f"{predicted[-1]:.2f}",
            f"{result.median_ms:.2f} ({result.iqr_ms:.2f})",
            f"{100 * (predicted[-1] / result.median_ms - 1):+.1f}%",
        )
    console.print(results)
    scores = prediction_metrics(measured, predicted)
    console.print(
        f"table vs measured: MAPE {scores['mape']:.1f}%, Kendall tau {scores['kendall_tau']:.2f}"
    )


def _parse_json(text: str, param: str) -> dict[str, Any]:
    """A JSON object given on the command line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not valid JSON ({error})", param_hint=param) from None
    if not isinstance(value, dict):
        raise click.BadParameter(f"expected a JSON object, got {text!r}", param_hint=param)
    return value


def _parse_shape(text: str) -> list[int]:
    """``"3,32,32"`` -> ``[3, 32, 32]``."""
    try:
        shape = [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        raise click.BadParameter(f"expected C,H,W integers, got {text!r}",
                                 param_hint="--input-shape") from None  # fmt: skip
    return shape


def _require_run(run_dir: str) -> RunDir:
    """The run in ``run_dir``; a usage error unless it holds a training run's checkpoint."""
    return RunDir(run_dir).require_trained()


def _parse_objectives(specs: tuple[str, ...]) -> dict[str, str]:
    objectives = {}
    for spec in specs:
        name, sep, sense = spec.partition(":")
        if not sep or sense not in ("min", "max") or not name:
            raise click.BadParameter(f"expected NAME:min or NAME:max, got {spec!r}",
                                     param_hint="--objective")  # fmt: skip
        objectives[name] = sense
    return objectives


@cli.command("search")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--objective", "objective_specs", multiple=True, default=("accuracy:max", "macs:min"),
    show_default=True, metavar="NAME:min|max",
    help="Repeatable. Metrics: accuracy, loss, macs, params, latency_ms (with --lut), "
    "measured_latency_ms (with --measure-runtime), peak_memory_bytes (--measure-memory).",
)  # fmt: skip
@click.option("--constraint", "constraints", multiple=True, metavar="EXPR",
              help="E.g. 'macs <= 20e6'; repeatable.")  # fmt: skip
@click.option("--strategy", default="linas", show_default=True,
              help="random, grid, nsga2, linas, sorted.")  # fmt: skip
@click.option("--budget", default=50, show_default=True, type=click.IntRange(1, MAX_BUDGET),
              help="Sub-networks to evaluate.")  # fmt: skip
@click.option("--batch-size", default=5, show_default=True, type=click.IntRange(1, MAX_BUDGET),
              help="Configs per round.")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED))
@click.option("--lut", type=click.Path(dir_okay=False), help="Latency table from onefit profile.")
@click.option(
    "--target-profile", metavar="FILE|this-machine",
    help="With --lut: the device the search is for; a table measured under another device "
    "profile is refused. A profile JSON (DeviceProfile.save; a latency table's also "
    "serves), or this-machine: this machine with the table's runtime, threads and batch.",
)  # fmt: skip
@click.option("--measure-runtime", help="Also time each sub-network on this runtime.")
@click.option("--measure-memory", is_flag=True, help="Also measure peak inference memory.")
@click.option("--out", help="Output folder (default RUN_DIR/search).")
@click.option("--run-name", default=DEFAULT_SEARCH, show_default=True,
              help="The search's name (export and report find it by --search NAME).")  # fmt: skip
def search_command(
    run_dir: str,
    objective_specs: tuple[str, ...],
    constraints: tuple[str, ...],
    strategy: str,
    budget: int,
    batch_size: int,
    seed: int,
    lut: str | None,
    target_profile: str | None,
    measure_runtime: str | None,
    measure_memory: bool,
    out: str | None,
    run_name: str,
) -> None:
    """Search the trained supernet of RUN_DIR for its Pareto-optimal sub-networks.

    Results go to OUT/results.db (SQLite; running the same command again resumes),
    OUT/results.csv, OUT/pareto.json and OUT/front.png.
    """

    objectives = _parse_objectives(objective_specs)
    run = _require_run(run_dir)
    _remember_run_dir(run_dir)
    latency_table = _latency_table(lut, target_profile)
    folder = run.add_search(run_name, out)
    result = search_run(
        run_dir, objectives, latency_table=latency_table, constraints=list(constraints),
        measure_runtime=measure_runtime, measure_memory=measure_memory, strategy=strategy,
        budget=budget,
        batch_size=batch_size, seed=seed, store=folder / STORE_FILE, run_name=run_name,
    )  # fmt: skip
    with ResultStore(folder / STORE_FILE) as store:
        store.export_csv(folder / "results.csv", store.run_id(run_name))
    pareto = [{"config": dict(e.config), "metrics": e.metrics} for e in result.pareto]
    (folder / "pareto.json").write_text(json.dumps(pareto, indent=1) + "\n")
    if len(objectives) >= 2:
        result.plot(folder / "front.png")
    table = Table(title=f"Pareto set ({len(result.pareto)} of {len(result.history)} evaluated)")
    table.add_column("config", no_wrap=True)
    names = list(dict.fromkeys([*objectives, "macs"]))
    for name in names:
        table.add_column(name, justify="right")
    for e in sorted(result.pareto, key=lambda e: e.metrics.get("macs", 0)):
        table.add_row(_describe_config(e.config), *(f"{e.metrics[n]:.4g}" for n in names))
    console.print(table)
    failed = sum(not e.ok for e in result.history)
    console.print(f"hypervolume {result.hypervolume:.4f}; {failed} failed; results in {folder}")


def _latency_table(lut: str | None, target_profile: str | None) -> LatencyTable | None:
    """The --lut table, checked against --target-profile when given; says where it was
    measured, so a table from another device is never used unnoticed."""
    if lut is None:
        if target_profile is not None:
            raise UserError("--target-profile checks the --lut table: give --lut too")
        return None
    table = LatencyTable.load(lut)
    measured = table.profile
    if target_profile == "this-machine":
        target = DeviceProfile.detect(
            runtime=measured.runtime, device=measured.device, threads=measured.threads,
            batch_size=measured.batch_size, name="this machine",
        )  # fmt: skip
        table.check_profile(target)
    elif target_profile is not None:
        table.check_profile(DeviceProfile.load(target_profile))
    console.print(
        f"latency_ms: predicted from {lut}, measured on {measured.name} "
        f"({measured.device_name}; {measured.runtime}, {measured.threads} threads, "
        f"batch {measured.batch_size})"
        + ("" if target_profile else "; no --target-profile given, so not checked")
    )
    return table


def _describe_config(config: onefit.ArchConfig) -> str:
    """Depth per stage and resolution for a supernet config, else the config's JSON."""
    depths = [str(config[n]) for n in config if n.startswith("d.")]
    return f"d={'/'.join(depths)} r={config['r']}" if depths and "r" in config else config.to_json()


@cli.command()
@click.option("--run-dir", default="runs/demo", show_default=True, help="Where everything goes.")
@click.option("--epochs", default=6, show_default=True, type=click.IntRange(1, MAX_EPOCHS),
              help="Supernet training epochs.")  # fmt: skip
@click.option("--budget", default=30, show_default=True, type=click.IntRange(1, MAX_BUDGET),
              help="Sub-networks the search evaluates.")  # fmt: skip
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 1024),
              help="Threads for latency figures.")  # fmt: skip
def demo(run_dir: str, epochs: int, budget: int, threads: int) -> None:
    """The quickstart: train, measure this CPU, search, export three models, report.

    On the embedded digits data: trains a small supernet, builds a latency table of this
    machine on ONNX Runtime, searches accuracy against latency, exports the smallest,
    the knee and the most accurate Pareto sub-networks as ONNX with model cards, and
    writes RUN_DIR/report/index.html. Running it again resumes every stage.
    """

    for flag, value in (("--epochs", epochs), ("--budget", budget), ("--threads", threads)):
        if value < 1:
            raise click.BadParameter("must be >= 1", param_hint=flag)
    _remember_run_dir(run_dir)
    run_demo(DemoSettings(run_dir, epochs, budget, threads), console)


@cli.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--pick", "choice", default="most-accurate", show_default=True,
              help="most-accurate, knee, smallest, a constraint such as 'latency_ms <= 5', "
              "or a config as JSON.")  # fmt: skip
@click.option("--format", "fmt", default="onnx", show_default=True,
              type=click.Choice(EXPORT_FORMATS), help="Model format.")  # fmt: skip
@click.option("--int8", is_flag=True, help="Also an INT8 model (ONNX Runtime static quantization).")
@click.option(
    "--threads", default=1, show_default=True, type=click.IntRange(min=1),
    help="Threads for the latency figure.",
)  # fmt: skip
@click.option("--out", help="Output folder (default RUN_DIR/exports/PICK-FORMAT).")
@click.option("--search", "search_name", default=DEFAULT_SEARCH, show_default=True,
              help="Which of the run's searches to pick from (its --run-name).")  # fmt: skip
def export_command(run_dir: str, choice: str, fmt: str, int8: bool, threads: int,
                   out: str | None, search_name: str) -> None:  # fmt: skip
    """Export a Pareto sub-network of RUN_DIR's search with a model card of measured figures."""

    _require_run(run_dir)
    _remember_run_dir(run_dir)
    result = export(run_dir, choice, format=fmt, int8=int8, out=out, threads=threads,
                    search=search_name)  # fmt: skip
    card = result.card
    figures = ", ".join(f"{k} {v:.4f}" for k, v in card.evaluation.figures().items())
    console.print(
        f"{card.pick}: {card.evaluation.metric} {figures}; {card.latency.median_ms:.3f} ms on "
        f"{card.latency.profile.runtime}; {card.macs / 1e6:.2f} MMACs"
    )
    console.print(f"wrote {result.model_path} and {result.folder / 'model_card.json'}")


@cli.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", help="Output folder (default RUN_DIR/report).")
@click.option("--search", "search_name", default=DEFAULT_SEARCH, show_default=True,
              help="Which of the run's searches to show (its --run-name).")  # fmt: skip
def report_command(run_dir: str, out: str | None, search_name: str) -> None:
    """Write RUN_DIR/report/index.html: Pareto fronts, training curves, tables."""

    _remember_run_dir(run_dir)
    page = write_report(run_dir, out, search=search_name)
    console.print(f"report: {page}")


def main() -> None:
    """Console-script entry point."""
    # As uvicorn and torchrun do: a model named by import path may live in this folder.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    cli(prog_name="onefit")
