"""config.toml → a validated, immutable ``Settings`` (the daemon's only view of configuration).

Sources, highest priority first: ``DRIFTD_<SECTION>__<KEY>`` environment variables, secret
files in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``), then the TOML file. Every
problem — TOML syntax, unknown keys, wrong types, bad values, missing secrets — is collected
and raised at once as one ``ConfigError`` whose lines are ``dotted.path: message``, before
anything starts. Relative paths resolve against the config file's folder.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import zoneinfo
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import tomllib
from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from daemon import defaults
from daemon.alert_settings import AlertsSettings
from daemon.channels import CHANNELS, RetrainSettings
from daemon.config_types import ConfigSection, non_empty_secret, parse_listen
from daemon.defaults import CONFIG_ENV, CONFIG_FILE, ENV_PREFIX
from sinks.redact import dsn_secrets, mask_dsn
from sinks.store import StoreOptions

#: systemd credential file name → dotted settings path it fills (``LoadCredential=NAME:...``).
CREDENTIAL_FILES: dict[str, tuple[str, ...]] = {
    **{file: (*channel.table(), key)
       for channel in CHANNELS.values() for file, key in channel.CREDENTIALS.items()},
    "store_password": ("store", "password"),
}


#: Option fields that only code can set (callbacks), never config.toml.
NOT_CONFIGURABLE = frozenset({"progress_callback", "labels_path"})


class ConfigError(Exception):
    """Raised when the configuration cannot be read or is invalid; ``errors`` lists each problem."""

    def __init__(self, errors: list[str], source: Path | None = None) -> None:
        self.errors = errors
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  {e}" for e in errors)
        super().__init__(f"{len(errors)} configuration error(s){where}:\n{lines}")


class DataSettings(ConfigSection):
    """Where the dated production folders, the baseline and the daemon's state live.

    ``production_root`` and ``baseline`` are local paths or fsspec URLs (``s3://…``,
    ``gs://…``, ``az://…``: ``daemon.locations``); ``storage_options`` are the fsspec
    filesystem's keyword arguments (e.g. an S3-compatible ``endpoint_url``; credentials come
    from the environment). ``reports_url``: a URL the reports are also copied to.
    """

    production_root: Path | str = defaults.PRODUCTION_ROOT
    date_format: str = defaults.DATE_FORMAT
    baseline: Path | str = defaults.BASELINE_FILE
    storage_options: dict[str, Any] = Field(default_factory=dict)
    reports_url: str = ""
    state_dir: Path = defaults.STATE_DIR
    reports_dir: Path | None = None
    ready_marker: str = defaults.READY_MARKER
    settle_seconds: float = Field(default=defaults.SETTLE_SECONDS, ge=0)
    report_url: str = ""

    @field_validator("production_root", "baseline", mode="before")
    @classmethod
    def _path_or_url(cls, value: Any) -> Any:
        from daemon.locations import parse_location

        return parse_location(value) if isinstance(value, str | Path) else value

    @field_validator("reports_url")
    @classmethod
    def _reports_url(cls, value: str) -> str:
        from daemon.locations import parse_location

        if value and not isinstance(parse_location(value), str):
            raise ValueError(f"reports_url {value!r} is not a URL; use e.g. "
                             "s3://bucket/driftd/reports (reports_dir is the local folder)")
        return value.rstrip("/")

    @field_validator("date_format")
    @classmethod
    def _date_format_has_a_date(cls, value: str) -> str:
        if not all(code in value for code in ("%Y", "%m", "%d")):
            raise ValueError(
                f"date_format {value!r} must contain %Y, %m and %d (strftime codes), "
                "e.g. '%Y%m%d' for folders named 20261126"
            )
        return value

    @property
    def reports_path(self) -> Path:
        """The reports folder: ``reports_dir``, else ``<state_dir>/reports``."""
        if self.reports_dir is not None:
            return self.reports_dir
        return self.state_dir / defaults.REPORTS_SUBDIR


class ModelSettings(ConfigSection):
    """The classifier; ``path`` unset runs image-only analysis. Other keys: ModelOptions fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    path: Path | None = None
    labels_path: Path | None = None

    @property
    def options(self) -> dict[str, Any]:
        """The keys passed through to ``analyzer.model.ModelOptions``."""
        return dict(self.model_extra or {})


class AnalysisSettings(ConfigSection):
    """Keys of ``analyzer.options.AnalyzerOptions`` (validated by constructing it)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ScheduleSettings(ConfigSection):
    """When the nightly job fires and how far back it looks for unprocessed folders."""

    cron: str = defaults.CRON
    timezone: str = defaults.TIMEZONE
    lookback_days: int = Field(default=defaults.LOOKBACK_DAYS, ge=1, le=3660)
    max_attempts: int = Field(default=defaults.MAX_ATTEMPTS, ge=1)
    retry_seconds: int = Field(default=defaults.RETRY_SECONDS, ge=1, le=86400)
    """How often, between nightly runs, ``driftd run`` retries the alerts and database writes
    that are due (a Slack outage at 01:15 is retried on its backoff, not at the next night)."""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
            ) from None
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as err:
            raise ValueError(
                f"invalid cron expression {value!r} ({err}); use 5 fields, e.g. '15 1 * * *'"
            ) from None
        return value


class StoreSettings(ConfigSection):
    """The metric store: ``sqlite:///relative/or/absolute.sqlite`` or ``postgresql://…``."""

    url: str = defaults.STORE_URL
    password: SecretStr | None = None
    retention_days: int = Field(default=defaults.RETENTION_DAYS, ge=0)
    """Nights whose folder date is older than this are deleted after every run from every
    table driftd writes, and their nightly report files too; 0 keeps everything."""
    connect_timeout_s: int = Field(default=defaults.CONNECT_TIMEOUT_S, ge=1, le=300)
    statement_timeout_s: float = Field(default=defaults.STATEMENT_TIMEOUT_S, gt=0, le=3600)
    """PostgreSQL ``statement_timeout``: a query running longer is cancelled and the night's
    write is deferred like an outage (keep it well under systemd's ``TimeoutStopSec``)."""
    lock_timeout_s: float = Field(default=defaults.LOCK_TIMEOUT_S, gt=0, le=3600)
    """PostgreSQL ``lock_timeout``: waiting longer for a lock (a table locked by someone else)
    cancels the statement; the write is deferred, nothing is lost."""

    @field_validator("password")
    @classmethod
    def _password_set(cls, value: SecretStr | None) -> SecretStr | None:
        return non_empty_secret(value)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                f"unsupported store url scheme {scheme!r}; use sqlite:///path.sqlite "
                "or postgresql://user@host:port/db"
            )
        return value

    @property
    def masked_url(self) -> str:
        """The url with any password replaced by ``***`` (safe to log)."""
        return mask_dsn(self.url)

    def options(self) -> StoreOptions:
        """What ``sinks.store.open_store`` takes: this table, with the password secret."""
        return StoreOptions(
            password=self.password.get_secret_value() if self.password else None,
            retention_days=self.retention_days or None,
            compress_after_days=defaults.COMPRESS_AFTER_DAYS,
            connect_timeout_s=self.connect_timeout_s,
            statement_timeout_s=self.statement_timeout_s,
            lock_timeout_s=self.lock_timeout_s,
        )


class HttpSettings(ConfigSection):
    """The status API: ``listen = "127.0.0.1:8000"``; empty turns it off."""

    listen: str = ""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        """Empty or ``off`` disables it; else the status server's own parser must accept it,
        so a bad address is a config error before start, not a crash at start."""
        if value.strip().lower() in ("", "off"):
            return ""
        parse_listen(value)
        return value


class LoggingSettings(ConfigSection):
    """Log level and rendering (``auto``: console on a TTY, JSON lines otherwise)."""

    level: Literal["debug", "info", "warning", "error"] = defaults.LOG_LEVEL
    format: Literal["auto", "json", "console"] = defaults.LOG_FORMAT

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class _EnvSource(EnvSettingsSource):
    """``DRIFTD_*`` variables; a value that is not valid JSON for a list or table field is
    passed on as text, so that validation reports it with its dotted path (and list fields
    that accept comma-separated text, such as ``alerts.email.recipients``, can split it)."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value


class Settings(BaseSettings):
    """The whole configuration; build it with ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )
    #: Secret values from $CREDENTIALS_DIRECTORY, set by ``load_settings`` while it builds.
    _credentials: ClassVar[dict[str, Any]] = {}

    data: DataSettings = Field(default_factory=DataSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    alerts: AlertsSettings = Field(default_factory=lambda: AlertsSettings.model_validate({}))
    retrain: RetrainSettings = Field(default_factory=lambda: RetrainSettings.model_validate({}))
    http: HttpSettings = Field(default_factory=HttpSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """Problems worth a warning that do not stop driftd (e.g. a world-readable secret)."""
        return list(self._warnings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML content arrives as init kwargs; it must rank *below* env and credentials.
        credentials = InitSettingsSource(settings_cls, init_kwargs=cls._credentials)
        return _EnvSource(settings_cls), credentials, init_settings


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """The config file to read: ``--config``, else ``$DRIFTD_CONFIG``, else ``./config.toml``."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return CONFIG_FILE


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read, validate and resolve the configuration.

    Args: path — the config file (``None``: see ``config_path``).
    Returns: ``Settings`` with absolute paths.
    Raises: ``ConfigError`` listing every problem with its dotted path.
    """
    source = config_path(path)
    try:
        with source.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            [f"config file {str(source)!r} not found; pass --config FILE or set {CONFIG_ENV}"]
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"TOML syntax: {err}"], source) from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            [f"the file is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
             f"{err.start}); save it as UTF-8"],
            source,
        ) from None
    except OSError as err:
        raise ConfigError([f"cannot read config file: {err.strerror}"], source) from None
    return build_settings(raw, base_dir=source.resolve().parent, source=source)


def build_settings(
    raw: dict[str, Any], *, base_dir: Path, source: Path | None = None
) -> Settings:
    """Validate ``raw`` (the TOML tables) with env/credential overrides (see ``load_settings``)."""
    credentials = read_credentials(os.environ.get("CREDENTIALS_DIRECTORY"), raw)
    errors: list[str] = list(credentials.errors)
    Settings._credentials = credentials.values
    try:
        settings = Settings(**raw)
    except ValidationError as err:
        # A refused credential file already explains why its value is missing.
        refused = {line.split(":", 1)[0] for line in credentials.errors}
        errors.extend(line for line in format_validation_errors(err)
                      if not (line.split(":", 1)[0] in refused and "required" in line))
        settings = None
    finally:
        Settings._credentials = {}
    if settings is not None:
        errors.extend(validate_analyzer_options(settings))
    if errors or settings is None:
        raise ConfigError(errors, source)
    resolved = resolve_paths(settings, base_dir)
    resolved._warnings.extend(credentials.warnings)
    return resolved


@dataclasses.dataclass
class Credentials:
    """What ``read_credentials`` found: nested settings ``values``, and the ``errors`` and
    ``warnings`` about the files (each ``dotted.path: message``; never a secret's content)."""

    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)


def read_credentials(directory: str | None, raw: dict[str, Any]) -> Credentials:
    """The known secret files in ``directory`` (a missing file: no value).

    A secret fills a table the config file has (``[alerts.slack]``); it never enables a
    channel on its own, except top-level tables (``store``, ``retrain``) which always exist.
    A file that cannot be read, is not UTF-8 text or is empty is an error; one every user
    may read is a warning.
    """
    found = Credentials()
    if not directory:
        return found
    for name, dotted in CREDENTIAL_FILES.items():
        file = Path(directory) / name
        path = ".".join(dotted)
        try:
            info = file.stat()
        except FileNotFoundError:
            continue
        except OSError as err:
            found.errors.append(f"{path}: credential file {file} cannot be read "
                                f"({err.strerror}); fix its permissions or remove it")
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        if len(dotted) > 2 and not _has_table(raw, dotted[:-1]):
            continue
        try:
            secret = file.read_bytes().decode("utf-8").strip()
        except UnicodeDecodeError:
            found.errors.append(f"{path}: credential file {file} is not UTF-8 text; write the "
                                "secret into it as plain text")
            continue
        except OSError as err:
            found.errors.append(f"{path}: credential file {file} cannot be read "
                                f"({err.strerror}); make it readable by driftd (e.g. "
                                "systemd LoadCredential=) or remove it")
            continue
        if not secret or any(ord(c) < 32 or ord(c) == 127 for c in secret):
            problem = "is empty" if not secret else "holds a control character"
            found.errors.append(f"{path}: credential file {file} {problem}; write the "
                                "secret into it, or remove the file")
            continue
        if info.st_mode & stat.S_IROTH:
            found.warnings.append(f"{path}: credential file {file} is readable by every user "
                                  f"(mode {stat.S_IMODE(info.st_mode):04o}); chmod 0600 it")
        node = found.values
        for key in dotted[:-1]:
            node = node.setdefault(key, {})
        node[dotted[-1]] = secret
    return found


def _has_table(raw: dict[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = raw
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return isinstance(node, dict)


def format_validation_errors(err: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[str]:
    """One ``dotted.path: message`` line per pydantic error, worded for a config file."""
    lines = []
    for item in err.errors(include_url=False, include_input=True):
        loc = ".".join(str(p) for p in (*prefix, *item["loc"]))
        if item["type"] == "extra_forbidden":
            message = "unknown key; remove it or check its spelling"
        elif item["type"] == "missing":
            message = "required; set it (or provide it as a secret file / environment variable)"
        elif item["type"] == "list_type" and isinstance(item.get("input"), str):
            message = ("expected a list; in an environment variable write a JSON list, "
                       'e.g. ["a", "b"]')
        elif item["type"] in ("enum", "literal_error"):
            # Choices are never secrets, so echoing the bad value is safe and helpful.
            what = "severity" if str(item["loc"][-1]).endswith("severity") else "value"
            expected = item.get("ctx", {}).get("expected", "")
            message = f"unknown {what} {item['input']!r}; expected {expected}"
        else:
            message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {message}" if loc else message)
    return lines


def validate_analyzer_options(settings: Settings) -> list[str]:
    """Errors from building the analyzer's option dataclasses from ``[analysis]``/``[model]``."""
    errors: list[str] = []
    try:
        from analyzer.model import ModelOptions
        from analyzer.options import AnalyzerOptions
    except ImportError:  # the analyzer is the pure library; an old one simply has no options
        return errors
    for section, cls, values in (
        ("analysis", AnalyzerOptions, settings.analysis.options),
        ("model", ModelOptions, settings.model.options),
    ):
        errors.extend(_validate_dataclass(section, cls, values))
    return errors


def _validate_dataclass(section: str, cls: type, values: dict[str, Any]) -> list[str]:
    from analyzer.errors import AnalyzerError

    known = {f.name for f in dataclasses.fields(cls)} - NOT_CONFIGURABLE
    errors = [
        f"{section}.{key}: unknown key; expected one of {', '.join(sorted(known))}"
        for key in values
        if key not in known
    ]
    try:
        # validate_python also runs __post_init__, which checks ranges and modes.
        TypeAdapter(cls).validate_python({k: v for k, v in values.items() if k in known})
    except ValidationError as err:
        errors.extend(format_validation_errors(err, (section,)))
    except (AnalyzerError, TypeError, ValueError) as err:
        errors.append(f"{section}: {err}")
    return errors


def analyzer_kwargs(settings: Settings) -> dict[str, Any]:
    """The ``**options`` for ``DatasetAnalyzer``: ``[analysis]`` and ``[model]`` keys, typed."""
    from analyzer.model import ModelOptions
    from analyzer.options import AnalyzerOptions

    kwargs: dict[str, Any] = {}
    for cls, values in (
        (AnalyzerOptions, settings.analysis.options),
        (ModelOptions, settings.model.options),
    ):
        typed = TypeAdapter(cls).validate_python(values)
        kwargs.update({k: getattr(typed, k) for k in values})
    if settings.model.labels_path is not None:
        kwargs["labels_path"] = str(settings.model.labels_path)
    if settings.data.storage_options and "storage_options" not in kwargs:
        kwargs["storage_options"] = dict(settings.data.storage_options)
    return kwargs


def resolve_paths(settings: Settings, base_dir: Path) -> Settings:
    """A copy of ``settings`` whose relative paths (and sqlite url) are under ``base_dir``."""

    def absolute(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base_dir / p)

    def located(p: Path | str) -> Path | str:
        return p if isinstance(p, str) else (p if p.is_absolute() else base_dir / p)

    data = settings.data.model_copy(
        update={
            "production_root": located(settings.data.production_root),
            "baseline": located(settings.data.baseline),
            "state_dir": absolute(settings.data.state_dir),
            "reports_dir": absolute(settings.data.reports_dir),
        }
    )
    model = settings.model.model_copy(
        update={"path": absolute(settings.model.path),
                "labels_path": absolute(settings.model.labels_path)}
    )
    url = settings.store.url
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        url = f"sqlite:///{absolute(db)}"
    store = settings.store.model_copy(update={"url": url})
    return settings.model_copy(update={"data": data, "model": model, "store": store})


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret value (and the webhook URL's secret parts), for redaction."""
    values = settings.alerts.secrets(settings.retrain)
    if settings.store.password is not None:
        values.append(settings.store.password.get_secret_value())
    values += dsn_secrets(settings.store.url)
    return [v for v in values if v]


def effective_config(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data with every secret masked (``config check``)."""
    dumped: dict[str, Any] = settings.model_dump(mode="json")
    dumped["store"]["url"] = settings.store.masked_url
    return dumped
