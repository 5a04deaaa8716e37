"""The run directory: the one place that knows where a run's files live.

A training run writes its resolved settings, checkpoint and metrics; each search of it
gets a name and a folder with its results store; exports and the report go in their
own folders. Every stage (train, search, export, report) and the CLI ask a
:class:`RunDir` for paths instead of spelling them, so a search written elsewhere
(``onefit search RUN --out DIR --run-name a``) is still found by name
(``onefit export RUN --search a``): the run keeps an index of its searches.

Layout::

    RUN/config.json              resolved training settings
    RUN/run.json                 the run's identity (a random id, written once)
    RUN/checkpoints/last.pt      the checkpoint (exact resume)
    RUN/metrics.jsonl            one line of metrics per epoch
    RUN/tensorboard/             TensorBoard events, when installed
    RUN/search/results.db        the default searches' store (one run per search name)
    RUN/searches.json            search name -> folder, for searches kept elsewhere
    RUN/exports/<pick>-<format>/ exported models with their model cards
    RUN/report/index.html        the report

Example:
    >>> import tempfile
    >>> run = RunDir(tempfile.mkdtemp())
    >>> run.checkpoint.relative_to(run.root).as_posix()
    'checkpoints/last.pt'
    >>> folder = run.add_search("a")
    >>> (folder / "results.db").touch()   # what `onefit search` writes
    >>> store, name = run.find_search("a")
    >>> store == (folder / "results.db").resolve(), name
    (True, 'a')
    >>> run.search_names()
    ['a']
    >>> run.run_id() == RunDir(run.root).run_id()  # written once, then read
    True
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from pathlib import Path

from onefit.errors import UserError
from onefit.files import fsync_dir, write_json_atomic

DEFAULT_SEARCH = "search"
STORE_FILE = "results.db"
RUN_FORMAT = "onefit-run/1"


class RunDirError(UserError):
    """The folder is not a training run, or has no search of the name asked for."""


def _create_once(path: Path, data: object) -> None:
    """Write ``path`` complete or not at all, unless it exists: the JSON goes to a unique
    fsynced temporary file that is hard-linked as ``path`` (the link fails if another
    process made it first, and a crash never leaves half a file), then unlinked."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # of two processes asking at once, one writes; both read
            return
        except OSError:  # a file system without hard links: exclusive create instead
            with contextlib.suppress(FileExistsError), open(path, "x", encoding="utf-8") as file:
                json.dump(data, file)
        fsync_dir(path.parent)
    finally:
        os.unlink(tmp)


class RunDir:
    """Paths of one run (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    # -- training ---------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / "last.pt"

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / "tensorboard"

    @property
    def identity_file(self) -> Path:
        return self.root / "run.json"

    def run_id(self) -> str:
        """The run's identity: a random id written to ``run.json`` the first time it is
        asked for and never changed, so files made from this run (search stores,
        exports) can say which run they belong to and a copy from another run is told
        apart. A damaged ``run.json`` is a :class:`RunDirError`."""
        path = self.identity_file
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            _create_once(path, {"format": RUN_FORMAT, "run_id": uuid.uuid4().hex})
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunDirError(f"{path} is not a run identity file ({error})") from None
        if not isinstance(data, dict):
            data = {}
        run_id = data.get("run_id")
        if data.get("format") != RUN_FORMAT or not isinstance(run_id, str) or not run_id:
            raise RunDirError(f"{path} is not a run identity file (format {RUN_FORMAT!r})")
        return run_id

    def require_trained(self) -> RunDir:
        """Raise :class:`RunDirError` unless a training run's checkpoint is here."""
        if not self.checkpoint.is_file():
            raise RunDirError(
                f"{self.root}: no such checkpoint file ({self.checkpoint.relative_to(self.root)});"
                " pass a run directory made by onefit train"
            )
        return self

    def settings(self) -> dict[str, object]:
        """The resolved training settings (``config.json``)."""
        if not self.config_file.is_file():
            raise RunDirError(
                f"{self.config_file} not found: pass a run directory made by onefit train"
            )
        try:
            settings = json.loads(self.config_file.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunDirError(f"{self.config_file} is not valid JSON ({error})") from None
        if not isinstance(settings, dict):
            raise RunDirError(f"{self.config_file} does not hold a table of settings")
        return settings

    # -- searches ---------------------------------------------------------------------------
    @property
    def default_search_dir(self) -> Path:
        return self.root / "search"

    @property
    def search_index(self) -> Path:
        return self.root / "searches.json"

    def _index(self) -> dict[str, str]:
        if not self.search_index.is_file():
            return {}
        try:
            index = json.loads(self.search_index.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunDirError(f"{self.search_index} is not valid JSON ({error})") from None
        if not isinstance(index, dict) or not all(isinstance(v, str) for v in index.values()):
            raise RunDirError(f"{self.search_index} is not a search index (name -> folder)")
        return index

    def add_search(
        self, name: str = DEFAULT_SEARCH, folder: str | os.PathLike[str] | None = None
    ) -> Path:
        """The folder of search ``name`` (default ``RUN/search``), created and indexed."""
        if not isinstance(name, str) or not name.strip():
            raise RunDirError(f"a search name must be a non-empty string, got {name!r}")
        path = Path(folder) if folder is not None else self.default_search_dir
        path.mkdir(parents=True, exist_ok=True)
        index = self._index()
        index[name] = os.path.relpath(path.resolve(), self.root.resolve())
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.search_index, index)
        return path

    def search_names(self) -> list[str]:
        """Names of the searches this run knows, sorted."""
        return sorted(self._index())

    def find_search(self, name: str = DEFAULT_SEARCH) -> tuple[Path, str]:
        """(results store, run name in it) of search ``name``; a clear error if unknown."""
        index = self._index()
        if name in index:
            folder = (self.root / index[name]).resolve()
        elif (self.default_search_dir / STORE_FILE).is_file():
            # Runs searched before the index existed keep every search in RUN/search.
            folder = self.default_search_dir
        else:
            known = ", ".join(sorted(index)) or "none yet"
            raise RunDirError(
                f"{self.root}: no search named {name!r} (searches: {known}); run "
                f"`onefit search {self.root} --run-name {name}` first"
            )
        store = folder / STORE_FILE
        if not store.is_file():
            raise RunDirError(f"{store} not found: run `onefit search {self.root}` first")
        return store, name

    # -- deployment -------------------------------------------------------------------------
    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    def export_dir(self, slug: str) -> Path:
        return self.exports_dir / slug

    def model_cards(self) -> list[Path]:
        """Every export's ``model_card.json``, sorted by folder; never one in a hidden
        folder (the work folders of an export being written or interrupted)."""
        cards = self.exports_dir.glob("*/model_card.json")
        return sorted(p for p in cards if not p.parent.name.startswith("."))

    @property
    def report_dir(self) -> Path:
        return self.root / "report"
