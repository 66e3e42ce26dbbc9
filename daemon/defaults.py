"""Every default of the daemon in one place: config values, file names, intervals and limits.

``daemon.config`` and the channel settings (``daemon.channels``) take their defaults from
here, and the daemon passes each value on to the sinks explicitly, so a default is written
once. README's config reference and ``config.toml`` document the same values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from analyzer.severity import Severity

# ---- config file and environment -----------------------------------------------------------

CONFIG_FILE = Path("config.toml")
"""The config file read when neither ``--config`` nor ``$DRIFTD_CONFIG`` names one."""

ENV_PREFIX = "DRIFTD_"
"""Prefix of the environment variables that override config keys (``DRIFTD_STORE__URL``)."""

CONFIG_ENV = "DRIFTD_CONFIG"
"""Environment variable naming the config file."""

# ---- [data] --------------------------------------------------------------------------------

PRODUCTION_ROOT = Path("data/production")
"""The folder holding the dated folders of production images (relative to the config)."""

DATE_FORMAT = "%Y%m%d"
"""How the dated folders are named (strftime codes): ``20261126``."""

BASELINE_FILE = Path("var/baseline.json")
"""The saved baseline profile every night is compared with."""

STATE_DIR = Path("var")
"""The daemon's own folder: state file, lock, reports (``StateDirectory=`` under systemd)."""

REPORTS_SUBDIR = "reports"
"""The reports folder inside ``state_dir`` when ``data.reports_dir`` is not set."""

READY_MARKER = "_SUCCESS"
"""A file whose presence says a dated folder is complete (the export job writes it)."""

SETTLE_SECONDS = 600.0
"""Without a marker, a folder is ready once nothing in it changed for this long."""

# ---- [schedule] ----------------------------------------------------------------------------

CRON = "15 1 * * *"
"""When the nightly run fires (5-field crontab), outside the 02:00–03:00 DST hours."""

TIMEZONE = "UTC"
"""The schedule's timezone (IANA name); also the zone of the night's instant."""

LOOKBACK_DAYS = 14
"""How many days back the work list looks for dated folders not yet done."""

MAX_ATTEMPTS = 3
"""A folder date that failed this many times is given up on (it needs ``driftd retry``)."""

RETRY_SECONDS = 60
"""Between nightly runs, due alerts and deferred store writes are retried this often."""

MISFIRE_GRACE_S = 24 * 3600
"""A cron fire that starts late (machine suspended, previous run still busy) still runs."""

IDLE_TICK_S = 30.0
"""The service loop's wake-up when systemd's watchdog is off (the stop flag wakes it sooner)."""

# ---- [store] -------------------------------------------------------------------------------

STORE_URL = "sqlite:///var/driftd.sqlite"
"""The metric store: the embedded SQLite file under the state folder."""

RETENTION_DAYS = 400
"""Nights older than this are deleted from the store and the reports folder (0 keeps all)."""

COMPRESS_AFTER_DAYS = 30
"""TimescaleDB only: metric chunks older than this are compressed."""

CONNECT_TIMEOUT_S = 5
"""How long an unreachable database server may stall a night before it is deferred."""

STATEMENT_TIMEOUT_S = 30.0
"""PostgreSQL ``statement_timeout``: a slower query is cancelled and the write deferred."""

LOCK_TIMEOUT_S = 10.0
"""PostgreSQL ``lock_timeout``: waiting longer for a lock cancels the statement."""

# ---- state files ---------------------------------------------------------------------------

STATE_DB_NAME = "state.sqlite"
"""The state file in ``state_dir``: run ledger, pending store writes, alert outbox."""

LOCK_NAME = "driftd.lock"
"""File lock in ``state_dir``: one run at a time, even across ``run`` and ``run --once``."""

# ---- the HTML report -----------------------------------------------------------------------

HISTORY_DAYS = 30
"""Nights of trend shown in the HTML report."""

# ---- [alerts] ------------------------------------------------------------------------------

MONITOR = "driftd"
"""The monitored model's name in alerts (PagerDuty's ``dedup_key`` is made from it)."""

CONSOLE_ALERTS = True
"""Print alerts on stdout when no other channel is configured."""

CONSOLE_MIN_SEVERITY = Severity.LOW
"""The console's threshold (it has no config table of its own)."""

ALERT_MAX_ATTEMPTS = 8
"""An alert that failed this many times is recorded as dead."""

BACKOFF_BASE_S = 30.0
"""First retry delay of a failed alert; doubled per attempt, times a jitter in [0.5, 1]."""

BACKOFF_CAP_S = 3600.0
"""The longest retry delay of a failed alert."""

SEND_TIMEOUT_S = 60.0
"""One delivery pass waits this long for the channels before leaving them to finish."""

SLACK_MIN_SEVERITY = Severity.LOW
"""Slack gets every drift alert from ``low`` on."""

SLACK_TIMEOUT_S = 10.0
"""How long one Slack webhook call may take."""

EMAIL_PORT = 587
"""SMTP submission port (STARTTLS); implicit TLS uses 465."""

EMAIL_MIN_SEVERITY = Severity.MEDIUM
"""Email gets drift alerts from ``medium`` on."""

EMAIL_TIMEOUT_S = 20.0
"""How long one SMTP conversation may take."""

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
"""PagerDuty Events API v2 endpoint."""

PAGERDUTY_MIN_SEVERITY = Severity.HIGH
"""PagerDuty pages on ``high`` drift only."""

PAGERDUTY_TIMEOUT_S = 10.0
"""How long one PagerDuty Events API call may take."""

PAGERDUTY_SOURCE = "driftd"
"""The ``payload.source`` of PagerDuty events."""

# ---- [retrain] -----------------------------------------------------------------------------

RETRAIN_MEDIUM_AT = "03:00"
"""On medium drift the retraining trigger is scheduled for this time (HH:MM, UTC)."""

RETRAIN_TIMEOUT_S = 3600.0
"""How long the retraining command may run (the URL call is capped at 30 s)."""

RETRAIN_ON_HIGH: Final = "now"
"""On high drift the retraining trigger runs at once (``"off"``: never)."""

RETRAIN_ON_MEDIUM: Final = "schedule"
"""On medium drift the trigger is scheduled for ``medium_at`` (``"now"`` or ``"off"``)."""

# ---- [logging] -----------------------------------------------------------------------------

LOG_LEVEL: Final = "info"
"""The lowest level logged."""

LOG_FORMAT: Final = "auto"
"""Console text on a terminal, JSON lines otherwise (journald)."""

# ---- [http] --------------------------------------------------------------------------------

HTTP_REQUEST_TIMEOUT_S = 10.0
"""Socket timeout per status API connection, so a stalled client cannot hold a thread."""

STORE_PING_TTL_S = 30.0
"""How long one metric-store reachability check is reused by the status API."""
