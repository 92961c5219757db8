"""Configuration: YAML files, merged key by key, with environment substitution.

Which files: the ``:``-separated list in ``APP_CONFIG``; without it,
``config/app-config.yaml`` and then ``config/app-config.local.yaml`` if present.
Later files override earlier ones key by key; lists are replaced whole.

``${NAME}`` in a string is replaced by the environment variable ``NAME``,
``${NAME:-default}`` gives a default, and ``$${`` writes a literal ``${``.

Every problem (a missing file, bad YAML, a missing variable, an unknown key, a
value of the wrong type) is collected and raised together as one ``ConfigError``
whose lines each name the key and the file.  Loading never starts anything and
never logs a substituted value, since those are often secrets.

``masked`` is the configuration as it may be shown (``frobs check-config``):
every secret written ``****`` and a database URL's password too, except an empty
secret (an unset ``${NAME:-}``), which is shown as ``""`` since it is skipped and
hides nothing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

import jsonschema
import yaml

from .durations import FORMS as DURATION_FORMS
from .durations import parse_duration

DEFAULT_FILES = ("config/app-config.yaml",)
LOCAL_FILE = "config/app-config.local.yaml"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*\Z"

#: Keys whose values are secrets, whatever section they are in.
SECRET_KEYS = frozenset({"webhookSecret", "adminToken", "secrets"})
MASK = "****"

Path_ = tuple[str, ...]


class ConfigError(Exception):
    """Raised with every configuration problem found, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )


_DURATION = {
    "oneOf": [
        {"type": "string"},
        {"type": "object", "minProperties": 1},
    ]
}

_PROVIDER = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "dataUrl": {"type": "string", "minLength": 1},
        "itemUrl": {"type": "string", "minLength": 1},
        "previousStateUrl": {"type": "string", "minLength": 1},
        "maxDeletionRatio": {"type": "number", "minimum": 0, "maximum": 1},
        "allowEmptySource": {"type": "boolean"},
        "schedule": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "frequency": _DURATION,
                "timeout": _DURATION,
                "initialDelay": _DURATION,
            },
        },
    },
}

_GITHUB_PROVIDER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["organization"],
    "properties": {
        "organization": {"type": "string", "minLength": 1},
        "catalogPath": {"type": "string", "minLength": 1},
        "branch": {"type": "string", "minLength": 1},
    },
}

_SECRETS = {"type": "array", "items": {"type": "string"}, "minItems": 1}

_SIGNATURE = {
    "type": "object",
    "required": ["type", "secrets"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["hmac", "standard-webhooks"]},
        "secrets": _SECRETS,
        "header": {"type": "string", "pattern": "^[A-Za-z0-9-]+$"},
        "algorithm": {"enum": ["sha1", "sha256", "sha512"]},
        "prefix": {"type": "string"},
        "encoding": {"enum": ["hex", "base64"]},
        "toleranceSeconds": {"type": "integer", "minimum": 1},
    },
}

_SECRET_MODULE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"webhookSecret": {"type": "string"}},
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "events": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "http": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "topics": {
                            "type": "array",
                            "items": {"type": "string", "pattern": NAME_PATTERN},
                        },
                        "maxBodyBytes": {"type": "integer", "minimum": 1},
                        "signatures": {
                            "type": "object",
                            "propertyNames": {"pattern": NAME_PATTERN},
                            "additionalProperties": _SIGNATURE,
                        },
                    },
                },
                "modules": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "github": _SECRET_MODULE,
                        "gitlab": _SECRET_MODULE,
                    },
                },
                "retry": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "maxAttempts": {"type": "integer", "minimum": 1},
                        "initialDelay": _DURATION,
                        "maxDelay": _DURATION,
                    },
                },
                "deduplication": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "retention": _DURATION,
                        "withoutDeliveryId": _DURATION,
                    },
                },
            },
        },
        "catalog": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "store": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "path": {"type": "string", "minLength": 1},
                        "type": {"enum": ["file", "postgres"]},
                        "url": {"type": "string"},
                    },
                },
                "providers": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "frobs": {
                            "type": "object",
                            "propertyNames": {"pattern": NAME_PATTERN},
                            "additionalProperties": _PROVIDER,
                        },
                        "github": {
                            "type": "object",
                            "propertyNames": {"pattern": NAME_PATTERN},
                            "additionalProperties": _GITHUB_PROVIDER,
                        },
                    },
                },
            },
        },
        "backend": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "reading": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "allow": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["host"],
                                "properties": {"host": {"type": "string"}},
                            },
                        },
                        "maxBytes": {"type": "integer", "minimum": 1},
                    },
                },
                "auth": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"adminToken": {"type": "string"}},
                },
            },
        },
    },
}

_VARIABLE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class Config:
    """The merged configuration and, for each key, the file that set it."""

    data: dict
    sources: dict[Path_, Path] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def source_of(self, dotted: str) -> Path | None:
        """The file that set this key (or the nearest enclosing key)."""
        parts = tuple(dotted.split("."))
        while parts:
            if parts in self.sources:
                return self.sources[parts]
            parts = parts[:-1]
        return None


def config_files(environ: Mapping[str, str], cwd: Path) -> list[Path]:
    """The files to read, in order, as ``APP_CONFIG`` or the defaults say."""
    listed = environ.get("APP_CONFIG", "")
    if listed.strip():
        return [cwd / p for p in listed.split(":") if p.strip()]

    files = [cwd / p for p in DEFAULT_FILES]
    if (cwd / LOCAL_FILE).is_file():
        files.append(cwd / LOCAL_FILE)
    return files


def load_config(
    environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Config:
    """Read, substitute, merge and check the configuration files."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    config = Config(data={})
    problems: list[str] = []

    unset: list[str] = []
    for path in config_files(environ, cwd):
        document = _read_yaml(path, problems)
        if document is None:
            continue
        config.files.append(path)
        document = _substitute(document, (), path, environ, unset)
        _merge(config.data, document, (), path, config.sources)

    problems.extend(unset)
    _coerce(config.data, SCHEMA)
    # A key whose variable is unset was reported already; its empty value is not.
    problems.extend(p for p in _schema_problems(config) if not _about_unset(p, unset))
    try:
        problems.extend(_semantic_problems(config))
    except (TypeError, AttributeError, KeyError, ValueError):
        # A shape the schema problems above already describe.
        if not problems:
            raise
    if problems:
        raise ConfigError(problems)
    return config


def _about_unset(problem: str, unset: list[str]) -> bool:
    return any(problem.startswith(u.split(": environment variable")[0]) for u in unset)


def _read_yaml(path: Path, problems: list[str]) -> dict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(
            f"{path}: config file not found (APP_CONFIG lists the files to read)"
        )
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read config file: {exc}")
        return None

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problems.append(f"{path}: not valid YAML: {exc}")
        return None

    if document is None:
        return {}
    if not isinstance(document, dict):
        problems.append(f"{path}: the top level must be a mapping of keys")
        return None
    return document


def _substitute(
    node: Any, at: Path_, path: Path, environ: Mapping[str, str], problems: list
) -> Any:
    if isinstance(node, dict):
        return {
            k: _substitute(v, at + (str(k),), path, environ, problems)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [
            _substitute(v, at + (str(i),), path, environ, problems)
            for i, v in enumerate(node)
        ]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(
            f"{path}: {'.'.join(at)}: environment variable {name} is not set "
            f"(set it, or write ${{{name}:-default}} to give a default)"
        )
        return ""

    return _VARIABLE.sub(replace, node)


def _merge(
    into: dict, document: dict, at: Path_, path: Path, sources: dict[Path_, Path]
) -> None:
    for key, value in document.items():
        here = at + (str(key),)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            sources.setdefault(here, path)
            _merge(into[key], value, here, path, sources)
            continue
        into[key] = value
        for known in [k for k in sources if k[: len(here)] == here]:
            del sources[known]
        _record_sources(value, here, path, sources)


def _record_sources(
    value: Any, at: Path_, path: Path, sources: dict[Path_, Path]
) -> None:
    sources[at] = path
    if isinstance(value, dict):
        for key, child in value.items():
            _record_sources(child, at + (str(key),), path, sources)


_SCALARS = {
    "integer": (re.compile(r"-?\d+"), int),
    "number": (re.compile(r"-?\d+(\.\d+)?"), float),
    "boolean": (re.compile(r"true|false"), lambda text: text == "true"),
}


def _coerce(node: Any, schema: dict) -> None:
    """Turn substituted strings ("5242880", "0.3", "true") into the types wanted."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        child = schema.get("properties", {}).get(key)
        if child is None and isinstance(schema.get("additionalProperties"), dict):
            child = schema["additionalProperties"]
        if child is None:
            continue
        scalar = _SCALARS.get(child.get("type"))
        if scalar and isinstance(value, str):
            pattern, convert = scalar
            if pattern.fullmatch(value.strip()):
                node[key] = convert(value.strip())
        else:
            _coerce(value, child)


def _schema_problems(config: Config) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    problems = []
    for error in sorted(validator.iter_errors(config.data), key=lambda e: e.path):
        at = [str(p) for p in error.absolute_path]
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            for extra in sorted(set(error.instance) - set(allowed)):
                key = ".".join(at + [extra])
                problems.append(
                    f"{_file_of(config, key)}: unknown key {key!r}"
                    + (f" (known keys here: {', '.join(allowed)})" if allowed else "")
                )
            continue
        key = ".".join(at) or "(top level)"
        problems.append(f"{_file_of(config, key)}: {key}: {_describe(error)}")
    return problems


def _describe(error: jsonschema.ValidationError) -> str:
    expected = error.schema.get("type")
    if error.validator == "type":
        return f"must be of type {expected}, got {error.instance!r}"
    if error.validator == "pattern" or (
        error.validator == "propertyNames" or "pattern" in error.schema
    ):
        return (
            f"{error.instance!r} is not a valid name: use letters, digits and "
            "'.', '_', ':', '-', starting with a letter or digit"
        )
    if error.validator == "oneOf":
        return f"must be {DURATION_FORMS}, got {error.instance!r}"
    return error.message


def _file_of(config: Config, key: str) -> str:
    source = config.source_of(key)
    if source is not None:
        return str(source)
    return ", ".join(str(f) for f in config.files) or "configuration"


def _semantic_problems(config: Config) -> list[str]:
    """Checks the schema cannot express: durations, and signatures' topics."""
    problems = _signature_problems(config)
    for key in (
        "events.retry.initialDelay",
        "events.retry.maxDelay",
        "events.deduplication.retention",
        "events.deduplication.withoutDeliveryId",
    ):
        if config.get(key) is not None:
            try:
                parse_duration(config.get(key))
            except ValueError as exc:
                problems.append(f"{_file_of(config, key)}: {key}: {exc}")
    providers = config.get("catalog.providers.frobs", {}) or {}
    for env, settings in providers.items():
        for name, value in ((settings or {}).get("schedule") or {}).items():
            key = f"catalog.providers.frobs.{env}.schedule.{name}"
            if name == "frequency" and isinstance(value, dict) and "cron" in value:
                problems.extend(_cron_problems(config, key, value))
                continue
            try:
                parse_duration(value)
            except ValueError as exc:
                problems.append(f"{_file_of(config, key)}: {key}: {exc}")
    return problems


def _signature_problems(config: Config) -> list[str]:
    problems = []
    topics = config.get("events.http.topics", ["frobs"])
    for topic, settings in (config.get("events.http.signatures") or {}).items():
        key = f"events.http.signatures.{topic}"
        if topic not in topics:
            problems.append(
                f"{_file_of(config, key)}: {key}: topic {topic!r} is not in "
                "events.http.topics"
            )
        if settings.get("type") == "hmac" and "header" not in settings:
            problems.append(
                f"{_file_of(config, key)}: {key}: an hmac signature needs the header "
                "that carries it (header: x-signature)"
            )
        if not any(settings.get("secrets") or [""]):
            problems.append(
                f"{_file_of(config, key)}: {key}.secrets: every secret is empty; set "
                "the environment variables they name"
            )
    return problems


def _cron_problems(config: Config, key: str, value: dict) -> list[str]:
    from croniter import croniter

    if set(value) != {"cron"} or not isinstance(value["cron"], str):
        return [
            f"{_file_of(config, key)}: {key}: write a cron schedule as "
            "{cron: '*/5 * * * *'}"
        ]
    if not croniter.is_valid(value["cron"]):
        return [
            f"{_file_of(config, key)}: {key}: "
            f"{value['cron']!r} is not a cron expression"
        ]
    return []


def masked(node: Any, key: str = "") -> Any:
    """``node`` with every secret masked, for showing; ``key`` is the node's key.

    An empty secret stays ``""``: it is skipped where secrets are used, and
    masking it would suggest a secret is set.
    """
    if key in SECRET_KEYS:
        if isinstance(node, list):
            return [_masked_secret(secret) for secret in node]
        return _masked_secret(node)
    if key == "url" and isinstance(node, str) and urlsplit(node).password:
        parts = urlsplit(node)
        netloc = f"{parts.username}:{MASK}@{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
        return urlunsplit(parts._replace(netloc=netloc))
    if isinstance(node, dict):
        return {k: masked(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [masked(v) for v in node]
    return node


def _masked_secret(secret: Any) -> Any:
    return secret if secret in ("", None) else MASK
