"""What a run is given and what it reports: settings in, per-table results out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asyncmig.check.verify import CheckResult
from asyncmig.cli.settings import DeepCheck, Duplicates, default
from asyncmig.load.pipeline import PipelineSettings
from asyncmig.plan.model import Plan
from asyncmig.plan.overrides import Overrides
from asyncmig.target.connect import Target


@dataclass(frozen=True)
class RunSettings:
    source: Path
    target: Target
    schema: str = default("schema")
    jobs: int = default("jobs")
    replace: bool = default("replace")
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    overrides: Overrides = field(default_factory=Overrides)
    workers: str = "auto"  # "process", "inline", or "auto": processes for large sources
    lock_timeout: float = 10.0  # seconds the run's DDL waits for a lock (0: no limit)
    cascade: bool = False  # --replace may drop the application's dependent views and keys
    backup_schema: bool = True  # --replace keeps the replaced tables for `rollback`
    snapshot: bool = default(
        "snapshot"
    )  # read from a consistent copy taken first (app still writing)
    command: str = "run"  # recorded in the history
    output_dir: Path | None = None  # where the rollback script goes (None: not written)
    log_file: Path | None = None  # recorded in the history
    rejects_dir: Path | None = None  # rejected rows go to <rejects_dir>/run<N>/<table>.jsonl
    duplicates: Duplicates = default("duplicates")  # noqa: RUF009 -- an enum member
    max_rejects_total: int | None = default("max_rejects_total")  # more fails the run
    deep: DeepCheck | None = None  # `check --deep` settings
    restart: bool = default("restart")  # run: never resume an interrupted run's stage
    chunk_rows: int = default("chunk_rows")  # run: commit large tables in recorded rowid ranges
    full_compare: bool = default("full_compare")  # sync: every row, not the changed ranges
    sync_marks: bool = default("sync_marks")  # run: record the source marks for sync


@dataclass(frozen=True)
class TableReport:
    table: str
    rows: int
    load_seconds: float
    index_seconds: float
    replaced: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    reject_file: str | None = None
    taken_over: bool = False  # loaded by the interrupted run this one resumed


@dataclass(frozen=True)
class RunReport:
    """What a run reports, assembled once by :mod:`asyncmig.run` from what each phase
    returned (no phase writes into it)."""

    plan: Plan
    tables: list[TableReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    server_version: str = ""
    run_id: int | None = None
    checks: list[CheckResult] = field(default_factory=list)
    rollback_script: Path | None = None
    resumed_from: int | None = None  # the interrupted run whose stage this one took over
    continued: tuple[str, ...] = ()  # chunked tables loaded on after its recorded chunks
    finished: int | None = None  # the run killed after its cut-over whose job this one finished

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def replaced(self) -> int:
        return sum(sum(t.replaced.values()) for t in self.tables)

    @property
    def rejected(self) -> int:
        return sum(t.rejected for t in self.tables)
