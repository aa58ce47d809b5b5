"""The result store: runs and trials in SQL (SQLite by default, any SQLAlchemy URL).

Every trial is committed as soon as it finishes, so a run that dies loses nothing and
``--resume`` knows exactly which trials are done. The schema carries a version number and
is created (or migrated) when a store is opened.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from autotune.accuracy import capped_sqnr_db
from autotune.config import QuantConfig
from autotune.errors import InputError
from autotune.outcome import Note, json_default
from autotune.settings import RunSpec
from autotune.trial import Trial

# 2: predictions and roofline_peaks tables; 3: typed run settings and trial facts;
# 4: a run's campaign (the runs of one run file); 5: model profiles (the cost model's graph
# features of every stored model) and what a run's search concluded; 6: a prediction's facts
# (stage, interval, failure probability, front, ...) as columns, not details keys
SCHEMA_VERSION = 6
DEFAULT_STORE_URL = "sqlite:///results/autotune.db"
# Names that stand for a run id wherever one is taken: the newest run, and the one before it.
RUN_ALIASES = ("latest", "previous")

metadata = sa.MetaData()

meta_table = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

runs_table = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("finished_at", sa.String(32)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("model_path", sa.Text, nullable=False),
    sa.Column("model_hash", sa.String(64), nullable=False),
    sa.Column("space", sa.Text, nullable=False),
    sa.Column("metric", sa.String(16), nullable=False),
    sa.Column("synthetic_data", sa.Boolean, nullable=False),
    sa.Column("reference_accuracy", sa.Float),
    sa.Column("args_json", sa.Text, nullable=False),  # schema 2's settings (argparse's dict)
    sa.Column("host_json", sa.Text, nullable=False),
    sa.Column("versions_json", sa.Text, nullable=False),
    sa.Column("settings_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("campaign", sa.String(64), index=True),  # None: a run of its own
    # What the search concluded (e.g. guided search's convergence); {}: nothing to say.
    sa.Column("search_json", sa.Text, nullable=False, server_default="{}"),
)

trials_table = sa.Table(
    "trials", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("model_hash", sa.String(64), nullable=False),
    sa.Column("config_id", sa.String(16), nullable=False),
    sa.Column("config_text", sa.Text, nullable=False),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("backend", sa.String(32), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("versions_json", sa.Text, nullable=False),
    sa.Column("cpu_model", sa.Text, nullable=False),
    sa.Column("cores", sa.Integer, nullable=False),
    sa.Column("emulated", sa.Boolean, nullable=False),
    sa.Column("compile_s", sa.Float),
    sa.Column("load_s", sa.Float),
    sa.Column("first_inference_ms", sa.Float),
    sa.Column("latencies_ms_json", sa.Text, nullable=False),
    sa.Column("latency_median_ms", sa.Float),
    sa.Column("latency_p90_ms", sa.Float),
    sa.Column("latency_p99_ms", sa.Float),
    sa.Column("latency_spread", sa.Float),
    sa.Column("peak_memory_bytes", sa.BigInteger),
    sa.Column("memory_bytes", sa.BigInteger),
    sa.Column("artifact_size_bytes", sa.BigInteger),
    sa.Column("accuracy", sa.Float),
    sa.Column("accuracy_drop", sa.Float),
    sa.Column("top1_agreement", sa.Float),
    sa.Column("sqnr_db", sa.Float),
    sa.Column("cosine", sa.Float),
    sa.Column("details_json", sa.Text, nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("finished_at", sa.String(32), nullable=False),
    sa.Column("facts_json", sa.Text, nullable=False, server_default="{}"),
    sa.UniqueConstraint("run_id", "config_id", "backend", "target", name="one_trial_per_key"),
)

# Cost-model predictions live apart from trials, so no query for measurements can return one.
predictions_table = sa.Table(
    "predictions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64), index=True),
    sa.Column("model_hash", sa.String(64), nullable=False),
    sa.Column("config_id", sa.String(16), nullable=False),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("backend", sa.String(32), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),  # the cost model that predicted
    sa.Column("latency_ms", sa.Float),
    sa.Column("memory_bytes", sa.Float),
    sa.Column("accuracy_drop", sa.Float),
    sa.Column("details_json", sa.Text, nullable=False),
    sa.Column("stage", sa.String(16), nullable=False, server_default=""),
    sa.Column("latency_low_ms", sa.Float),
    sa.Column("latency_high_ms", sa.Float),
    sa.Column("fidelity_error", sa.Float),
    sa.Column("failure_probability", sa.Float),
    sa.Column("expected_hypervolume_improvement", sa.Float),
    sa.Column("optimistic_gain", sa.Float),
    sa.Column("on_front", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("trained_on", sa.Integer),
    sa.Column("models", sa.Integer),
    sa.Column("expected_budget", sa.Integer),
)

# The graph profile (``graph.GraphProfile``) of every model a run measured, by model hash:
# the cost model learns from a stored trial without the ONNX file, which may be gone.
profiles_table = sa.Table(
    "model_profiles", metadata,
    sa.Column("model_hash", sa.String(64), primary_key=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("profile_json", sa.Text, nullable=False),
)

# Peak compute and bandwidth measured by `autotune roofline`, with where and when.
roofline_table = sa.Table(
    "roofline_peaks", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("target", sa.String(64), nullable=False, index=True),
    sa.Column("measured_at", sa.String(32), nullable=False),
    sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("cpu_model", sa.Text, nullable=False),
    sa.Column("cores", sa.Integer, nullable=False),
    sa.Column("peaks_json", sa.Text, nullable=False),
    sa.Column("memory_bandwidth_gbs", sa.Float),
    sa.Column("versions_json", sa.Text, nullable=False),
    sa.Column("details_json", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class Convergence:
    """Why guided search stopped before its budget (--until-converged)."""

    measured: int
    candidates: int  # the candidates ranked: measured ones and the rest of the pool
    best_gain: float  # the best remaining expected improvement, a fraction of the hypervolume
    threshold: float
    # A space larger than the pool: its size (what was ranked is a sample of it).
    space: int | None = None

    def text(self) -> str:
        drawn = f" (a pool drawn from {self.space:,})" if self.space else ""
        return (f"converged after {self.measured} of {self.candidates:,} candidates{drawn}: "
                f"best remaining EHVI {self.best_gain:.3%} < threshold {self.threshold:.3%} "
                f"of the hypervolume")

    def to_json(self) -> dict:
        return {"converged": True, "measured": self.measured, "candidates": self.candidates,
                "best_gain": self.best_gain, "threshold": self.threshold, "space": self.space,
                "text": self.text()}

    @classmethod
    def from_json(cls, data: dict) -> Convergence:
        """Read back ``to_json`` (its "converged" and "text" follow from the fields)."""
        return cls(data["measured"], data["candidates"], data["best_gain"], data["threshold"],
                   data.get("space"))


@dataclass(frozen=True)
class SearchSummary:
    """What a run's record says of its search, for its report: how big the space was, how
    much of it the run measured, and why it stopped before its budget (None: it did not)."""

    space_size: int | None = None
    measured: int | None = None
    converged: Convergence | None = None

    def extent(self) -> str:
        """" (8,192 candidates, 12 measured)"; empty for runs from before records said so."""
        if self.space_size is None:
            return ""
        measured = f", {self.measured:,} measured" if self.measured is not None else ""
        return f" ({self.space_size:,} candidates{measured})"

    def to_json(self) -> dict:
        data = {} if self.converged is None else self.converged.to_json()
        if self.space_size is not None:
            data["space_size"] = self.space_size
        if self.measured is not None:
            data["space_measured"] = self.measured
        return data

    @classmethod
    def from_json(cls, data: dict) -> SearchSummary:
        """Read back ``to_json``; {} (a run that has not started searching): nothing known."""
        return cls(data.get("space_size"), data.get("space_measured"),
                   Convergence.from_json(data) if data.get("converged") else None)


@dataclass
class Run:
    id: str
    created_at: str
    finished_at: str | None
    status: str
    model: str
    model_path: str
    model_hash: str
    space: str
    metric: str
    synthetic_data: bool
    reference_accuracy: float | None
    settings: RunSpec
    host: dict
    versions: dict
    campaign: str | None = None  # the run file invocation it belongs to (``new_campaign_id``)
    # The space's size, how much was measured, why the search stopped (``set_run_search``).
    search: SearchSummary = field(default_factory=SearchSummary)


@dataclass
class Prediction:
    """What the cost model expects of a config: never a measurement, stored apart.

    The facts a report or a later search reads are fields (and columns); ``details`` holds
    free-form extras for display only. A field a prediction does not know is None.

    Attributes:
        stage: when it was made (``autotune.predict``): "prior" (a guided run's, before its
            first measurement), "predict-only" (``autotune run --predict-only``) or
            "proposed" (guided search chose the config to measure next).
        latency_low_ms: the lowest of the ensemble members' latency predictions.
        latency_high_ms: the highest of them.
        fidelity_error: predicted 1 - cosine similarity of the outputs vs fp32.
        failure_probability: predicted probability that the config fails to compile or run.
        expected_hypervolume_improvement: what guided search expected the config to add to
            the measured front when it chose it (times the chance that it works).
        optimistic_gain: the optimistic improvement of the predicted front's hypervolume
            (best member's latency and error together), a fraction of that hypervolume.
        on_front: on the predicted front of its backend and target (``predict_space``).
        trained_on: stored trials the cost model learned from.
        models: distinct models among them.
        expected_budget: the candidates guided search is expected to measure (the batch's).
    """

    run_id: str | None
    model_hash: str
    config: QuantConfig
    backend: str
    target: str
    model_version: str
    latency_ms: float | None
    memory_bytes: float | None
    accuracy_drop: float | None
    stage: str = ""
    latency_low_ms: float | None = None
    latency_high_ms: float | None = None
    fidelity_error: float | None = None
    failure_probability: float | None = None
    expected_hypervolume_improvement: float | None = None
    optimistic_gain: float | None = None
    on_front: bool = False
    trained_on: int | None = None
    models: int | None = None
    expected_budget: int | None = None
    details: dict = field(default_factory=dict)
    created_at: str = ""


# The fields of ``Prediction`` stored in columns of their own name (schema 6).
_PREDICTION_TYPED = ("stage", "latency_low_ms", "latency_high_ms", "fidelity_error",
                     "failure_probability", "expected_hypervolume_improvement",
                     "optimistic_gain", "on_front", "trained_on", "models", "expected_budget")


@dataclass
class RooflinePeaks:
    """Peaks measured on one device for one target (``autotune roofline``).

    ``cpu_model`` is the measured device's (a remote target's, not the host's);
    ``level_bandwidth_gbs`` the cache and DRAM bandwidths measured there; ``emulator`` says
    how the device was emulated ("" on real hardware): such peaks are kept for the record and
    never used as a roof.
    """

    target: str
    measured_at: str
    hostname: str
    cpu_model: str
    cores: int
    peak_gops: dict[str, float]
    memory_bandwidth_gbs: float | None
    versions: dict
    details: dict
    level_bandwidth_gbs: dict[str, float] = field(default_factory=dict)
    emulator: str = ""


# The typed fields of ``RooflinePeaks`` that ride in its details column (schema 3 has no
# column of their own; a record stored before them reads back without them).
_ROOFLINE_TYPED = ("level_bandwidth_gbs", "emulator")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def new_campaign_id(name: str) -> str:
    """A campaign's id: the run file's name (so a listing says which matrix), then a run
    id's date stamp and random part."""
    readable = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:24]
    return f"{readable or 'campaign'}-{new_run_id()}"


def shown_url(url: str) -> str:
    """``url`` as it may be printed (messages, hints, logs): its password replaced by ``***``.

    A team store's URL may carry a password; it must not end up in a terminal, a CI log or a
    report.
    """
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:  # unparsable: hide whatever stands before the last '@'
        scheme, separator, rest = url.partition("://")
        return f"{scheme}{separator}***@{rest.rpartition('@')[2]}" if "@" in rest else url
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


class Store:
    """Runs and trials behind a SQLAlchemy engine."""

    def __init__(self, url: str = DEFAULT_STORE_URL) -> None:
        self.url = url
        self.shown_url = shown_url(url)  # what messages print
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if str(path) != ":memory:":
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise InputError(f"--store {self.shown_url}: cannot create {path.parent}: "
                                     f"{error.strerror}") from None
        try:
            self.engine = sa.create_engine(url, connect_args=_connect_args(url))
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as error:
            raise InputError(f"--store {self.shown_url}: cannot open store "
                             f"({str(error).replace(url, self.shown_url)})") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self._migrate()
        except sa.exc.DatabaseError as error:  # OperationalError, or a file that is no database
            raise InputError(f"--store {self.shown_url}: cannot open store "
                             f"({str(error.orig).splitlines()[0]})") from None

    def _migrate(self) -> None:
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Runs that open a new team store at once would race to create the tables.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(7415201)"))
            elif connection.dialect.name == "sqlite":
                # The same race on a new SQLite file ("table already exists"): take the write
                # lock first; the others wait for it (busy timeout), then see the tables.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            metadata.create_all(connection)
            row = connection.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).first()
            if row is None:
                connection.execute(meta_table.insert().values(key="schema_version",
                                                              value=str(SCHEMA_VERSION)))
            elif int(row.value) > SCHEMA_VERSION:
                raise InputError(f"--store {self.shown_url}: schema version {row.value} is newer "
                                 f"than this autotune ({SCHEMA_VERSION}); upgrade autotune")
            elif int(row.value) < SCHEMA_VERSION:
                for version in range(int(row.value), SCHEMA_VERSION):
                    _UPGRADES[version](connection)
                connection.execute(meta_table.update().where(meta_table.c.key == "schema_version")
                                   .values(value=str(SCHEMA_VERSION)))

    # Runs

    def create_run(self, run: Run) -> None:
        with self.engine.begin() as connection:
            connection.execute(runs_table.insert().values(
                id=run.id, created_at=run.created_at, finished_at=run.finished_at,
                status=run.status, model=run.model, model_path=run.model_path,
                model_hash=run.model_hash, space=run.space, metric=run.metric,
                synthetic_data=run.synthetic_data, reference_accuracy=run.reference_accuracy,
                args_json="{}", settings_json=json.dumps(run.settings.to_json()),
                host_json=json.dumps(run.host), versions_json=json.dumps(run.versions),
                campaign=run.campaign, search_json=json.dumps(run.search.to_json())))

    def set_run_status(self, run_id: str, status: str, finished: bool = False) -> None:
        values = {"status": status}
        if finished:
            values["finished_at"] = now()
        with self.engine.begin() as connection:
            connection.execute(runs_table.update().where(runs_table.c.id == run_id)
                               .values(**values))

    def get_run(self, run_id: str | None = None) -> Run:
        """A run by id; ``latest`` (or None) is the newest run, ``previous`` the one before."""
        query = sa.select(runs_table)
        if run_id in (None, *RUN_ALIASES):
            skip = 1 if run_id == "previous" else 0
            query = query.order_by(runs_table.c.created_at.desc(),
                                   runs_table.c.id.desc()).offset(skip)
        else:
            query = query.where(runs_table.c.id == run_id)
        with self.engine.connect() as connection:
            row = connection.execute(query.limit(1)).mappings().first()
        if row is None:
            if run_id == "previous":
                raise InputError(f"no previous run in {self.shown_url}: it holds fewer than "
                                 f"two runs")
            raise InputError(f"no run {run_id!r} in {self.shown_url}"
                             if run_id not in (None, *RUN_ALIASES)
                             else f"no runs in {self.shown_url} yet; start one with `autotune run`")
        return Run(id=row["id"], created_at=row["created_at"], finished_at=row["finished_at"],
                   status=row["status"], model=row["model"], model_path=row["model_path"],
                   model_hash=row["model_hash"], space=row["space"], metric=row["metric"],
                   synthetic_data=bool(row["synthetic_data"]),
                   reference_accuracy=row["reference_accuracy"],
                   settings=RunSpec.from_json(json.loads(row["settings_json"])),
                   host=json.loads(row["host_json"]),
                   versions=json.loads(row["versions_json"]), campaign=row["campaign"],
                   search=SearchSummary.from_json(json.loads(row["search_json"] or "{}")))

    def set_run_search(self, run_id: str, search: SearchSummary) -> None:
        """Record what the run's search covered and why it stopped (its report shows it)."""
        with self.engine.begin() as connection:
            connection.execute(runs_table.update().where(runs_table.c.id == run_id)
                               .values(search_json=json.dumps(search.to_json())))

    def runs(self, campaign: str | None = None) -> list[Run]:
        """Every run, oldest first; only those of ``campaign`` when it is given."""
        query = sa.select(runs_table.c.id).order_by(runs_table.c.created_at, runs_table.c.id)
        if campaign is not None:
            query = query.where(runs_table.c.campaign == campaign)
        with self.engine.connect() as connection:
            ids = connection.execute(query).scalars().all()
        return [self.get_run(run_id) for run_id in ids]

    def latest_campaign(self) -> str | None:
        """The campaign of the newest run that belongs to one; None when no run does."""
        query = (sa.select(runs_table.c.campaign).where(runs_table.c.campaign.is_not(None))
                 .order_by(runs_table.c.created_at.desc(), runs_table.c.id.desc()).limit(1))
        with self.engine.connect() as connection:
            return connection.execute(query).scalar()

    # Trials

    def add_trial(self, trial: Trial) -> None:
        """Commit one finished trial; a trial already stored under its key is replaced."""
        row = _trial_row(trial)
        with self.engine.begin() as connection:
            connection.execute(_DELETE_TRIAL, _key_params(trial))
            connection.execute(trials_table.insert(), row)

    def update_trial(self, trial: Trial) -> None:
        """Store a stored trial's new figures (a later measurement pass) in place."""
        row = _trial_row(trial)
        with self.engine.begin() as connection:
            if connection.execute(_UPDATE_TRIAL, {**row, **_key_params(trial)}).rowcount != 1:
                raise KeyError(f"no stored trial {trial.key} in run {trial.run_id}")

    def trials(self, run_id: str) -> list[Trial]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(trials_table)
                                      .where(trials_table.c.run_id == run_id)
                                      .order_by(trials_table.c.id)).mappings().all()
            settings = connection.execute(sa.select(runs_table.c.settings_json)
                                          .where(runs_table.c.id == run_id)).scalar()
        # Trials stored before they carried their tuning budget take their run's.
        tuning_trials = RunSpec.from_json(json.loads(settings or "{}")).tuning_trials
        return [_trial_from_row(row, tuning_trials) for row in rows]

    def trial_counts(self) -> dict[str, dict[str, int]]:
        """How many trials of each status every run holds (run id -> status -> count)."""
        query = (sa.select(trials_table.c.run_id, trials_table.c.status, sa.func.count())
                 .group_by(trials_table.c.run_id, trials_table.c.status))
        counts: dict[str, dict[str, int]] = {}
        with self.engine.connect() as connection:
            for run_id, status, count in connection.execute(query):
                counts.setdefault(run_id, {})[status] = count
        return counts

    # Predictions and roofline peaks

    def add_predictions(self, predictions: list[Prediction]) -> None:
        rows = [{"created_at": p.created_at or now(), "run_id": p.run_id,
                 "model_hash": p.model_hash, "config_id": p.config.id,
                 "config_json": json.dumps(p.config.to_dict(), sort_keys=True),
                 "backend": p.backend, "target": p.target, "model_version": p.model_version,
                 "latency_ms": p.latency_ms, "memory_bytes": p.memory_bytes,
                 "accuracy_drop": p.accuracy_drop,
                 **{name: getattr(p, name) for name in _PREDICTION_TYPED},
                 "details_json": json.dumps(p.details, default=json_default)}
                for p in predictions]
        if rows:
            with self.engine.begin() as connection:
                connection.execute(predictions_table.insert(), rows)

    def predictions(self, run_id: str) -> list[Prediction]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(predictions_table)
                                      .where(predictions_table.c.run_id == run_id)
                                      .order_by(predictions_table.c.id)).mappings().all()
        return [_prediction_from_row(row) for row in rows]

    def model_predictions(self, model_hash: str) -> list[Prediction]:
        """Predictions made for a model outside any run (``autotune run --predict-only``),
        oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(predictions_table)
                                      .where(predictions_table.c.run_id.is_(None))
                                      .where(predictions_table.c.model_hash == model_hash)
                                      .order_by(predictions_table.c.id)).mappings().all()
        return [_prediction_from_row(row) for row in rows]

    # Model profiles

    def add_profile(self, model_hash: str, model: str, profile: dict) -> None:
        """Keep a model's graph profile (``GraphProfile.to_json``); a stored one stays."""
        with self.engine.begin() as connection:
            exists = connection.execute(sa.select(profiles_table.c.model_hash).where(
                profiles_table.c.model_hash == model_hash)).first()
            if exists is None:
                connection.execute(profiles_table.insert().values(
                    model_hash=model_hash, model=model, created_at=now(),
                    profile_json=json.dumps(profile)))

    def profiles(self) -> dict[str, dict]:
        """Every stored graph profile, by model hash."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(profiles_table.c.model_hash,
                                                profiles_table.c.profile_json)).all()
        return {row.model_hash: json.loads(row.profile_json) for row in rows}

    def add_roofline(self, peaks: RooflinePeaks) -> None:
        with self.engine.begin() as connection:
            connection.execute(roofline_table.insert().values(
                target=peaks.target, measured_at=peaks.measured_at, hostname=peaks.hostname,
                cpu_model=peaks.cpu_model, cores=peaks.cores,
                peaks_json=json.dumps(peaks.peak_gops),
                memory_bandwidth_gbs=peaks.memory_bandwidth_gbs,
                versions_json=json.dumps(peaks.versions),
                details_json=json.dumps({**peaks.details,
                                         **{name: getattr(peaks, name)
                                            for name in _ROOFLINE_TYPED}},
                                        default=json_default)))

    def latest_roofline(self, target: str, cpu_model: str | None = None,
                        cores: int | None = None,
                        emulated: bool = False) -> RooflinePeaks | None:
        """The newest peaks measured for ``target`` (on that CPU and core count, if given);
        peaks measured on an emulated device only when ``emulated``."""
        query = sa.select(roofline_table).where(roofline_table.c.target == target)
        if cpu_model is not None:
            query = query.where(roofline_table.c.cpu_model == cpu_model)
        if cores is not None:
            query = query.where(roofline_table.c.cores == cores)
        query = query.order_by(roofline_table.c.measured_at.desc(), roofline_table.c.id.desc())
        with self.engine.connect() as connection:
            for row in connection.execute(query).mappings():
                peaks = _roofline_from_row(row)
                if emulated or not peaks.emulator:
                    return peaks
        return None

    def finished_keys(self, run_id: str) -> set[tuple[str, str, str]]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(trials_table.c.config_id, trials_table.c.backend,
                                                trials_table.c.target)
                                      .where(trials_table.c.run_id == run_id)).all()
        return {tuple(row) for row in rows}


def _prediction_from_row(row) -> Prediction:
    return Prediction(run_id=row["run_id"], model_hash=row["model_hash"],
                      config=QuantConfig.from_dict(json.loads(row["config_json"])),
                      backend=row["backend"], target=row["target"],
                      model_version=row["model_version"], latency_ms=row["latency_ms"],
                      memory_bytes=row["memory_bytes"], accuracy_drop=row["accuracy_drop"],
                      **{name: row[name] for name in _PREDICTION_TYPED},
                      details=json.loads(row["details_json"]), created_at=row["created_at"])


def _roofline_from_row(row) -> RooflinePeaks:
    details = json.loads(row["details_json"])
    typed = {name: details.pop(name) for name in _ROOFLINE_TYPED if name in details}
    return RooflinePeaks(target=row["target"], measured_at=row["measured_at"],
                         hostname=row["hostname"], cpu_model=row["cpu_model"],
                         cores=row["cores"], peak_gops=json.loads(row["peaks_json"]),
                         memory_bandwidth_gbs=row["memory_bandwidth_gbs"],
                         versions=json.loads(row["versions_json"]), details=details, **typed)


def _add_prediction_and_roofline_tables(connection) -> None:
    """Schema 1 -> 2: predictions and measured roofline peaks get their own tables."""
    predictions_table.create(connection, checkfirst=True)
    roofline_table.create(connection, checkfirst=True)


def _type_settings_and_facts(connection) -> None:
    """Schema 2 -> 3: a run's settings become a ``RunSpec``, a trial's facts typed fields.

    Schema 2 kept the argparse dict of a run and put passes, device, roofline, sensitivity
    and the backend's findings into a trial's free-form details; each moves to its typed
    home, and the trial's notes come from its backend, as they do for a new trial.
    """
    _add_missing_columns(connection, runs_table.c.settings_json, trials_table.c.facts_json)
    for row in connection.execute(sa.select(runs_table.c.id, runs_table.c.args_json)).all():
        spec = RunSpec.from_legacy_args(json.loads(row.args_json))
        connection.execute(runs_table.update().where(runs_table.c.id == row.id).values(
            settings_json=json.dumps(spec.to_json())))
    rows = connection.execute(sa.select(trials_table.c.id, trials_table.c.backend,
                                        trials_table.c.config_json,
                                        trials_table.c.details_json)).all()
    for row in rows:
        details, facts = legacy_facts(row.backend, json.loads(row.details_json))
        connection.execute(trials_table.update().where(trials_table.c.id == row.id).values(
            details_json=json.dumps(details, default=json_default),
            facts_json=json.dumps(facts, default=json_default)))


def legacy_facts(backend: str, details: dict) -> tuple[dict, dict]:
    """(display details, typed facts as ``Trial.facts_json`` writes them) of a schema 2
    trial's details."""
    details = dict(details)
    facts: dict = {name: details.pop(name) for name in
                   ("quantize_s", "compile_memory_bytes", "spreads", "noisy", "passes_skipped",
                    "roofline", "passes", "device") if name in details}
    details.pop("emulated", None)  # the trial's own column says it
    if "sensitivity" in details:
        facts["sensitivity"] = {"metric": details.pop("sensitivity_metric", ""),
                                "drops": details.pop("sensitivity")}
    facts["notes"] = [note.to_json() for note in _backend_notes(backend, details)]
    return details, facts


def _backend_notes(backend: str, details: dict) -> tuple[Note, ...]:
    from autotune.backends import backend_names, get_backend
    from autotune.backends.base import Artifact

    if backend not in backend_names():  # a backend this autotune no longer has
        return ()
    return get_backend(backend).notes(Artifact(backend, Path(), 0, 0.0, details=details))


def _add_campaign(connection) -> None:
    """Schema 3 -> 4: a run may belong to a campaign (the runs of one run file); older runs
    belong to none."""
    _add_missing_columns(connection, runs_table.c.campaign)
    (index,) = (index for index in runs_table.indexes if index.name == "ix_runs_campaign")
    index.create(connection, checkfirst=True)


def _add_profiles_and_search(connection) -> None:
    """Schema 4 -> 5: a table of model profiles (filled as runs start, and from model files
    that still exist when the cost model first trains) and a run's search conclusion."""
    profiles_table.create(connection, checkfirst=True)
    _add_missing_columns(connection, runs_table.c.search_json)


def _type_predictions(connection) -> None:
    """Schema 5 -> 6: what a report reads of a prediction moves from its details into
    columns (``legacy_prediction_fields``)."""
    _add_missing_columns(connection, *(predictions_table.c[name] for name in _PREDICTION_TYPED))
    rows = connection.execute(sa.select(predictions_table.c.id,
                                        predictions_table.c.details_json)).all()
    for row in rows:
        typed, details = legacy_prediction_fields(json.loads(row.details_json))
        connection.execute(predictions_table.update().where(predictions_table.c.id == row.id)
                           .values(**typed, details_json=json.dumps(details)))


def _add_missing_columns(connection, *columns: sa.Column) -> None:
    """ALTER TABLE ... ADD COLUMN of each column the database's table lacks, as ``metadata``
    declares it, in the connection's dialect (SQLite and PostgreSQL spell types and defaults
    apart): every upgrade step that adds a column adds it this one way."""
    dialect = connection.dialect
    present: dict[str, set[str]] = {}
    for column in columns:
        table = column.table.name
        if table not in present:
            present[table] = {c["name"] for c in sa.inspect(connection).get_columns(table)}
        if column.name in present[table]:
            continue
        sql = f"ALTER TABLE {table} ADD COLUMN {column.name} {column.type.compile(dialect)}"
        if column.server_default is not None:
            default = column.server_default.arg
            sql += " DEFAULT " + (f"'{default}'" if isinstance(default, str)
                                  else str(default.compile(dialect=dialect)))
        if not column.nullable:
            sql += " NOT NULL"
        connection.execute(sa.text(sql))


# A prediction's stage: what made it.
PRIOR = "prior"  # predictions a guided run made before its first measurement
PREDICT_ONLY = "predict-only"
PROPOSED = "proposed"  # what guided search expected of a config it chose to measure next

# Schema 5 details keys of a prediction that moved to a field of another name.
_RENAMED_PREDICTION_KEYS = {"on_predicted_front": "on_front"}


def legacy_prediction_fields(details: dict) -> tuple[dict, dict]:
    """(typed fields, display details) of a schema 5 prediction's details."""
    details = {_RENAMED_PREDICTION_KEYS.get(key, key): value
               for key, value in details.items()}
    typed = {name: details.pop(name) for name in _PREDICTION_TYPED if name in details}
    # A guided search's pick said its strategy; the table says it is a prediction.
    if details.pop("strategy", None) == "guided":
        typed.setdefault("stage", PROPOSED)
    for said_elsewhere in ("predicted", "candidates"):  # the table; the batch's row count
        details.pop(said_elsewhere, None)
    return typed, details


# Upgrade steps: _UPGRADES[n] takes a store from schema version n to n + 1.
_UPGRADES = {1: _add_prediction_and_roofline_tables, 2: _type_settings_and_facts,
             3: _add_campaign, 4: _add_profiles_and_search, 5: _type_predictions}


def _connect_args(url: str) -> dict:
    # Concurrent runs on one SQLite file wait for each other's commits instead of failing.
    return {"timeout": 60} if url.startswith("sqlite") else {}


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    # Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is
    # locked" at once (no busy wait) while another process creates the same file: retry.
    for attempt in range(200):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == 199:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_JSON_FIELDS = {"versions": "versions_json", "latencies_ms": "latencies_ms_json",
                "details": "details_json", "facts": "facts_json"}


# The WHERE clause that finds a trial's row (one per run and key), with bound parameters:
# built once, so storing a trial compiles no statement (``_key_params`` fills it in).
_TRIAL_KEY = ((trials_table.c.run_id == sa.bindparam("key_run_id"))
              & (trials_table.c.config_id == sa.bindparam("key_config_id"))
              & (trials_table.c.backend == sa.bindparam("key_backend"))
              & (trials_table.c.target == sa.bindparam("key_target")))
_DELETE_TRIAL = trials_table.delete().where(_TRIAL_KEY)
_UPDATE_TRIAL = trials_table.update().where(_TRIAL_KEY)


def _key_params(trial: Trial) -> dict:
    return {"key_run_id": trial.run_id, "key_config_id": trial.config.id,
            "key_backend": trial.backend, "key_target": trial.target}


def _trial_row(trial: Trial) -> dict:
    data = trial.to_dict()
    data["config_json"] = json.dumps(data.pop("config"), sort_keys=True)
    for name, column in _JSON_FIELDS.items():
        data[column] = json.dumps(data.pop(name), default=json_default)
    # PostgreSQL text cannot hold NUL bytes, which a crashed worker's log can contain.
    data["error"] = data["error"].replace("\x00", "")
    data["sqnr_db"] = capped_sqnr_db(data["sqnr_db"])  # a hand-made trial's inf, too
    return data


def _trial_from_row(row, tuning_trials: int) -> Trial:
    data = {column.name: row[column.name] for column in trials_table.columns}
    for name, column in _JSON_FIELDS.items():
        data[name] = json.loads(data.pop(column))
    data["config"] = QuantConfig.from_dict(json.loads(data.pop("config_json")))
    for name in ("id", "config_id", "config_text"):
        data.pop(name)
    data["emulated"] = bool(data["emulated"])
    facts = Trial.facts_from_json(data.pop("facts"))
    if facts["tuning_trials"] is None:
        facts["tuning_trials"] = tuning_trials
    return Trial(**data, **facts)
