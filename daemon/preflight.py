"""``driftd config check`` beyond the schema: can the daemon, as this user, do its job?

A config file can be valid and still useless: a production folder the service user cannot
list, a state folder on a read-only file system, a baseline that is ``{}``, a model file
that is not a model. :func:`check_deployment` looks at each path the daemon needs, as the
user running it, and returns :class:`Finding` lines keyed by the dotted config path. A
*fatal* finding means the daemon would fail every night (or not start); the others are
warnings about something that works but is probably not what was meant.

Nothing is created or changed: a folder that does not exist yet passes when the nearest
existing folder above it is writable (the daemon creates it at start).
"""

from __future__ import annotations

import json
import os
import pwd
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from analyzer.contract import IMAGE_FEATURES
from analyzer.errors import AnalyzerError, BaselineError
from analyzer.profile import Profile
from daemon.config import Settings, analyzer_kwargs


@dataclass(frozen=True)
class Finding:
    """One result of the check: ``key`` (dotted config path), what is wrong and how to fix it."""

    key: str
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def current_user() -> str:
    """``name (uid N)`` of the effective user, as messages name it."""
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:  # a systemd DynamicUser may have no passwd entry visible here
        return f"uid {uid}"


def check_deployment(settings: Settings) -> list[Finding]:
    """Every problem the daemon would hit with ``settings``, as the current user.

    Checks: ``data.production_root`` exists and can be listed; ``data.state_dir``, the
    reports folder and a SQLite store's folder are writable or can be created;
    ``data.baseline`` is a readable driftd profile with images; ``model.path`` loads in the
    TFLite interpreter and its labels match the baseline's model labels. Returns findings in
    that order (empty when all is well); never raises for a bad path.
    """
    findings: list[Finding] = []
    data = settings.data
    findings += _listable("data.production_root", data.production_root, data.date_format,
                          data.storage_options)
    state = _writable("data.state_dir", data.state_dir)
    findings += state
    if data.reports_dir is not None:
        findings += _writable("data.reports_dir", data.reports_dir)
    elif not state:  # e.g. a reports folder left owned by root after a run as root
        findings += _writable("data.state_dir", data.reports_path)
    sqlite = _sqlite_path(settings.store.url)
    if sqlite is not None and not sqlite.parent.is_relative_to(data.state_dir):
        findings += _writable("store.url", sqlite.parent)
    baseline, baseline_findings = load_baseline_profile(data.baseline,
                                                        storage_options=data.storage_options)
    findings += baseline_findings
    model_labels: list[str] | None = None
    if settings.model.path is not None:
        model_labels, model_findings = _load_model(settings)
        findings += model_findings
    findings += _labels_agree(settings, baseline, model_labels)
    return findings


def _listable(key: str, path: Path | str, date_format: str,
              storage_options: dict[str, Any] | None = None) -> list[Finding]:
    if isinstance(path, str):
        return _listable_url(key, path, date_format, storage_options)
    if not path.exists():
        return [Finding(key, f"{path} does not exist; create it or point {key} at the folder "
                             "that holds the dated folders of images")]
    if not path.is_dir():
        return [Finding(key, f"{path} is not a folder; point {key} at the folder that holds "
                             "the dated folders of images")]
    try:
        names = [entry.name for entry in os.scandir(path)]
    except PermissionError:
        return [Finding(key, f"{path} cannot be listed by {current_user()}: permission "
                             "denied; give that user read and execute permission on it and "
                             "read permission on the images (e.g. chmod -R o+rX, or a group; "
                             "under systemd also list it in ReadOnlyPaths=)")]
    except OSError as err:
        return [Finding(key, f"{path} cannot be listed: {err.strerror}")]
    if not any(_looks_dated(name, date_format) for name in names):
        return [Finding(key, f"{path} holds no dated folder yet (names like "
                             f"{_example_name(date_format)}); nothing will be analysed until "
                             "one appears", fatal=False)]
    return []


def _listable_url(key: str, url: str, date_format: str,
                  storage_options: dict[str, Any] | None) -> list[Finding]:
    """A production root on object storage can be listed with the environment's
    credentials and holds dated prefixes."""
    from daemon.locations import DatedRoot

    try:
        names = [name for name, _ in DatedRoot(url, storage_options).children()]
    except PermissionError as err:
        return [Finding(key, f"{url} cannot be listed: access denied ({err}); give the "
                             "credentials in the environment (e.g. the instance role) list "
                             "and read access to it")]
    except Exception as err:  # any client error: say what it was, this is a check command
        return [Finding(key, f"{url} cannot be listed: {type(err).__name__}: {err}")]
    if not any(_looks_dated(name, date_format) for name in names):
        return [Finding(key, f"{url} holds no dated prefix yet (names like "
                             f"{_example_name(date_format)}/); nothing will be analysed until "
                             "one appears", fatal=False)]
    return []


def _looks_dated(name: str, date_format: str) -> bool:
    try:
        datetime.strptime(name, date_format)
    except ValueError:
        return False
    return True


def _example_name(date_format: str) -> str:
    return date(2026, 11, 26).strftime(date_format)


def _writable(key: str, path: Path) -> list[Finding]:
    user = current_user()
    if path.exists():
        if not path.is_dir():
            return [Finding(key, f"{path} is not a folder")]
        if not os.access(path, os.W_OK | os.X_OK):
            return [Finding(key, f"{path} is not writable by {user}; make it writable by "
                                 "that user, or point it at a folder that is (under systemd: "
                                 "/var/lib/driftd, the unit's StateDirectory=)")]
        return []
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return [Finding(key, f"{path} does not exist and cannot be created: {existing} is not "
                             f"writable by {user}; create it for that user, or point {key} at "
                             "a writable folder (under systemd: /var/lib/driftd)")]
    return []


def _sqlite_path(url: str) -> Path | None:
    match = re.fullmatch(r"sqlite:///(.+)", url)
    return Path(match.group(1)) if match else None


def load_baseline_profile(path: Path | str, key: str = "data.baseline",
                          storage_options: dict[str, Any] | None = None
                          ) -> tuple[Profile | None, list[Finding]]:
    """The baseline ``Profile`` at ``path`` and the findings about it (fatal when it is None).

    Fatal: missing, unreadable, not JSON, not a driftd profile (``{}`` included), no images,
    or made by an analyzer that lacks today's image features.
    """
    rebuild = "build it with `driftd baseline DIR` (DIR: images the model is known to do well on)"
    from daemon.locations import read_bytes

    try:
        raw = json.loads(read_bytes(path, storage_options))
    except FileNotFoundError:
        return None, [Finding(key, f"{path} not found; {rebuild}")]
    except PermissionError:
        return None, [Finding(key, f"{path} cannot be read by {current_user()}: permission "
                                   "denied; make it readable (e.g. chmod 0644)")]
    except IsADirectoryError:
        return None, [Finding(key, f"{path} is a folder, not a baseline file; {rebuild}")]
    except OSError as err:
        return None, [Finding(key, f"{path} cannot be read: {err.strerror}")]
    except (ValueError, UnicodeDecodeError) as err:
        return None, [Finding(key, f"{path} is not JSON ({err}); {rebuild}")]
    try:
        profile = Profile.from_dict(raw)
    except BaselineError as err:
        # The analyzer's own advice names its Python API; the CLI's is `driftd baseline`.
        return None, [Finding(key, f"{path}: {str(err).split('; ')[0]}; {rebuild}")]
    if profile.image_count == 0:
        return None, [Finding(key, f"{path} is a profile of 0 images; {rebuild}")]
    missing = [f for f in IMAGE_FEATURES if f not in profile.features]
    if missing:
        return None, [Finding(key, f"{path} lacks the features {', '.join(missing)} (made by "
                                   f"an older driftd); {rebuild}")]
    return profile, []


def _load_model(settings: Settings) -> tuple[list[str] | None, list[Finding]]:
    # The TFLite runtime: only a config check with a model pays for it.
    from analyzer.model import Classifier, ModelOptions
    from analyzer.options import split_options

    path = settings.model.path
    assert path is not None
    try:
        _, model_kwargs = split_options(analyzer_kwargs(settings))
        classifier = Classifier.load(path, ModelOptions(**model_kwargs))
    except PermissionError:
        return None, [Finding("model.path", f"{path} cannot be read by {current_user()}: "
                                            "permission denied; make it readable")]
    except AnalyzerError as err:
        labels = settings.model.labels_path is not None and "labels file" in str(err)
        return None, [Finding("model.labels_path" if labels else "model.path", str(err))]
    return list(classifier.labels), []


def _labels_agree(settings: Settings, baseline: Profile | None,
                  model_labels: list[str] | None) -> list[Finding]:
    if baseline is None:
        return []
    base_model = baseline.model
    rebuild = "rebuild the baseline with `driftd baseline DIR` using this config"
    if settings.model.path is None:
        if base_model is not None:
            return [Finding("model.path", "unset, but the baseline holds model outputs "
                                          f"({base_model.name}); the model sections will be "
                                          "skipped every night; set model.path to that model",
                            fatal=False)]
        return []
    if model_labels is None:
        return []
    if base_model is None:
        return [Finding("data.baseline", "was built without a model, so the model sections "
                                         f"(confidence, classes) will be skipped; {rebuild}",
                        fatal=False)]
    if list(base_model.labels) != model_labels:
        return [Finding("model.path", _label_mismatch(base_model.labels, model_labels)
                        + f"; {rebuild}, or point model.path at the baseline's model")]
    return []


def _label_mismatch(base: list[str], model: list[str]) -> str:
    if len(base) != len(model):
        return (f"the model has {len(model)} classes but the baseline's model had "
                f"{len(base)}")
    first = next(i for i, (a, b) in enumerate(zip(base, model, strict=True)) if a != b)
    return (f"the model's labels differ from the baseline's (class {first}: "
            f"{model[first]!r} vs {base[first]!r})")


def format_findings(findings: list[Finding], source: Path | None) -> tuple[str, str]:
    """(fatal text, warning text) for the terminal; either may be empty."""
    fatal = [f for f in findings if f.fatal]
    warnings = [f for f in findings if not f.fatal]
    where = f" in {source}" if source else ""
    fatal_text = ""
    if fatal:
        lines = "\n".join(f"  {f}" for f in fatal)
        fatal_text = (f"driftd: {len(fatal)} fatal problem(s){where}; the daemon would not "
                      f"work:\n{lines}")
    warning_text = "\n".join(f"driftd: warning: {f}" for f in warnings)
    return fatal_text, warning_text
