"""Frobs providers from the configuration: one per ``catalog.providers.frobs.<env>``.

Each provider gets its URL templates, its mass-deletion guard settings, a URL
reader limited to the allowed hosts and to the folder of the config file that
names it, and its full-sync schedule.  A URL template that could never be
read stops startup here, before anything is read: a placeholder the template
cannot have, an item URL without ``{id}``, a scheme other than http, https and
file, no host, a host outside ``backend.reading.allow``, or a ``file:`` URL
leaving its folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from ..config import Config, ConfigError
from ..durations import parse_duration
from ..events.ordering import EventOrder
from ..reading import (
    DEFAULT_MAX_BYTES,
    FileUrlReader,
    HostAllowList,
    HttpUrlReader,
    ReadRefused,
    UrlReaders,
    template_host,
)
from ..scheduler import TaskSchedule
from .provider import (
    DEFAULT_DATA_URL,
    DEFAULT_ITEM_URL,
    FrobsEntityProvider,
    FrobsProviderSettings,
)

DEFAULT_SCHEDULE = {
    "frequency": {"minutes": 30},
    "timeout": {"minutes": 3},
    "initialDelay": {"seconds": 15},
}


def frobs_providers(
    config: Config, order: EventOrder
) -> list[tuple[FrobsEntityProvider, TaskSchedule]]:
    """One provider per configured environment; file: URLs are checked here."""
    environments = config.get("catalog.providers.frobs", {}) or {}
    templates = []
    for env, settings in environments.items():
        settings = settings or {}
        templates += [
            settings.get("dataUrl", DEFAULT_DATA_URL).replace("{env}", env),
            settings.get("itemUrl", DEFAULT_ITEM_URL),
            settings.get("previousStateUrl", ""),
        ]
    allow = config.get("backend.reading.allow")
    hosts = (
        [a["host"] for a in allow]
        if allow is not None
        else [h for h in map(template_host, templates) if h]
    )
    max_bytes = config.get("backend.reading.maxBytes", DEFAULT_MAX_BYTES)
    http = HttpUrlReader(HostAllowList(hosts), max_bytes)

    providers, problems = [], []
    for env, settings in environments.items():
        settings = settings or {}
        key = f"catalog.providers.frobs.{env}"
        source = config.source_of(f"{key}.dataUrl")
        folder = (source or Path("config/app-config.yaml").resolve()).parent
        files = FileUrlReader(folder, max_bytes)
        provider_settings = FrobsProviderSettings(
            env=env,
            data_url=settings.get("dataUrl", DEFAULT_DATA_URL),
            item_url=settings.get("itemUrl", DEFAULT_ITEM_URL),
            previous_state_url=settings.get(
                "previousStateUrl", "{itemUrl}/previous-state"
            ),
            max_deletion_ratio=settings.get("maxDeletionRatio", 0.5),
            allow_empty_source=settings.get("allowEmptySource", False),
        )
        readers = UrlReaders(http, files)
        for name, problem in _url_problems(readers, provider_settings):
            named = config.source_of(f"{key}.{name}") or source
            problems.append(f"{named}: {key}.{name}: {problem}")
        provider = FrobsEntityProvider(provider_settings, readers, order)
        providers.append((provider, _task_schedule(settings.get("schedule") or {})))

    if problems:
        raise ConfigError(problems)
    return providers


#: What a URL template may hold besides text, by setting.
_PLACEHOLDERS = {
    "dataUrl": {"{env}"},
    "itemUrl": {"{env}", "{id}"},
    "previousStateUrl": {"{env}", "{id}", "{itemUrl}"},
}
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
_SAMPLE_ID = "frob-id"


def _url_problems(
    readers: UrlReaders, settings: FrobsProviderSettings
) -> list[tuple[str, str]]:
    """What makes a provider's URL templates unreadable, as ``(setting,
    problem)``, the template quoted as written; checked with a sample frob id."""
    templates = {
        "dataUrl": (settings.data_url, settings.data()),
        "itemUrl": (settings.item_url, settings.item(_SAMPLE_ID)),
        "previousStateUrl": (
            settings.previous_state_url,
            settings.previous_state(_SAMPLE_ID),
        ),
    }
    problems: list[tuple[str, str]] = []
    for name, (template, url) in templates.items():
        known, found = _PLACEHOLDERS[name], set(_PLACEHOLDER.findall(template))
        if "{itemUrl}" in found and any(n == "itemUrl" for n, _ in problems):
            continue  # made of the item URL: its problem is said once
        if found - known:
            problems.append(
                (
                    name,
                    f"{template!r}: {', '.join(sorted(found - known))} is no "
                    f"placeholder here; {name} may hold {', '.join(sorted(known))}",
                )
            )
            continue
        try:
            readers.check(url)
        except ReadRefused as exc:
            problems.append((name, str(exc).replace(url, repr(template))))
            continue
        if name != "dataUrl" and _SAMPLE_ID not in _sent_part(url):
            problems.append(
                (
                    name,
                    f"{template!r} has no {{id}} where a request carries it (host, "
                    "path or query), so every frob would be read from one URL",
                )
            )
    return problems


def _sent_part(url: str) -> str:
    """What of a URL a request carries: its host, path and query (not the
    fragment, nor the user name and password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''} {parts.path} {parts.query}"


def _task_schedule(settings: dict) -> TaskSchedule:
    merged = {**DEFAULT_SCHEDULE, **settings}
    frequency = merged["frequency"]
    return TaskSchedule(
        frequency=frequency["cron"]
        if isinstance(frequency, dict) and "cron" in frequency
        else parse_duration(frequency),
        timeout=parse_duration(merged["timeout"]),
        initial_delay=parse_duration(merged["initialDelay"]),
    )
