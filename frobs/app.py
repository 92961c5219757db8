"""The application: configuration in, one Flask app wired from the parts out.

``create_app`` loads the configuration (or takes one), builds the events service,
the ingress, the routers, the store, the catalog API, the Frobs providers and the
scheduler, and registers Backstage's error envelope for every error.  It starts
no thread: ``Runtime.start`` does, once per worker process, after gunicorn forks
(see ``gunicorn.conf.py``), or on the first request of any other server.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask
from pythonjsonlogger.json import JsonFormatter

from .admin_auth import AdminAuth
from .catalog.api import CatalogApi
from .catalog.file_store import FileStore
from .catalog.provider import EntityProvider, EntityProviderConnection
from .catalog.query import CatalogQuery
from .catalog.store import CatalogStore
from .config import Config, ConfigError, load_config
from .durations import parse_duration
from .events.dead_letters_api import DeadLettersApi
from .events.inbox import FileInbox
from .events.ingress import HttpIngress
from .events.ordering import EventOrder
from .events.processor import DeliveryPolicy, EventProcessor
from .events.router import EventRouter, require_json_object
from .events.senders import GithubEventRouter, GitlabEventRouter
from .events.service import EventsService
from .events.webhook_security import SENDER_TOPICS, topic_validators
from .github.setup import github_providers
from .health import Health
from .http_errors import register_error_handlers
from .integration.router import TOPIC as FROBS_TOPIC
from .integration.router import FrobsEventRouter, check_frobs_payload
from .integration.setup import frobs_providers
from .metrics import metrics_blueprint
from .openapi import openapi_blueprint
from .request_body import DEFAULT_MAX_BODY_BYTES
from .scheduler import Scheduler
from .scheduler_api import SchedulerApi

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything one worker runs; ``start`` begins its background work."""

    config: Config
    events: EventsService
    ingress: HttpIngress
    store: CatalogStore
    scheduler: Scheduler
    processor: EventProcessor
    query: CatalogQuery
    routers: list[EventRouter] = field(default_factory=list)
    providers: list[EntityProvider] = field(default_factory=list)

    _started_in: int | None = field(default=None, init=False)

    def start(self) -> None:
        """Start the background work once in this process (it runs per request)."""
        if self._started_in == os.getpid():
            return
        with _START_LOCK:
            if self._started_in == os.getpid():
                return
            self._started_in = os.getpid()
        self.scheduler.start()
        self.processor.start()
        self.query.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self.processor.stop()
        self.query.stop()


_START_LOCK = threading.Lock()


def create_app(config: Config | None = None, start_background: bool = True) -> Flask:
    """The application; ``start_background=False`` keeps the scheduler off (tests)."""
    _configure_logging()
    config = load_config() if config is None else config
    runtime = build_runtime(config)

    app = Flask("frobs", static_folder=None)
    app.json.sort_keys = False
    app.json.mimetype = "application/json; charset=utf-8"
    app.extensions["frobs"] = runtime
    app.register_blueprint(runtime.ingress.blueprint(), url_prefix="/api/events")
    app.register_blueprint(
        CatalogApi(runtime.store, runtime.query).blueprint(),
        url_prefix="/api/catalog",
    )
    auth = AdminAuth(config.get("backend.auth.adminToken"))
    app.register_blueprint(
        DeadLettersApi(runtime.processor, auth).blueprint(), url_prefix="/api/events"
    )
    app.register_blueprint(
        SchedulerApi(runtime.scheduler, auth).blueprint(),
        url_prefix="/.backstage/scheduler/v1",
    )
    app.register_blueprint(openapi_blueprint(), url_prefix="/api")
    app.register_blueprint(metrics_blueprint(runtime.store))
    app.register_blueprint(
        Health(runtime.store, runtime.scheduler).blueprint(),
        url_prefix="/.backstage/health/v1",
    )
    # Every other body (by-refs, replay) has the webhook limit too.
    app.config["MAX_CONTENT_LENGTH"] = runtime.ingress.max_body_bytes
    register_error_handlers(app)

    if start_background:

        @app.before_request
        def start_background_work() -> None:
            runtime.start()

    return app


def check_config(config: Config) -> None:
    """Raise one ``ConfigError`` with every problem that building the service
    from ``config`` would meet, without opening the store or anything else."""
    checks = [
        topic_validators,
        github_providers,
        lambda checked: frobs_providers(checked, None),
    ]
    if config.get("catalog.store.type", "file") == "postgres":
        checks.append(database_url)
    problems = []
    for check in checks:
        try:
            check(config)
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)


def build_runtime(config: Config) -> Runtime:
    check_config(config)  # every problem at once, before anything is opened
    events = EventsService()
    path = store_path(config)
    store = _store(config, path)
    inbox, order = _event_files(store, path)
    processor = EventProcessor(events, inbox, _delivery_policy(config))

    validators = topic_validators(config)
    topics = list(config.get("events.http.topics", [FROBS_TOPIC]))
    topics += [t for t in SENDER_TOPICS if t in validators and t not in topics]
    ingress = HttpIngress(
        topics,
        processor.accept,
        config.get("events.http.maxBodyBytes", DEFAULT_MAX_BODY_BYTES),
    )
    for topic, guards in validators.items():
        for validator in guards:
            ingress.add_validator(topic, validator)
    runtime = Runtime(
        config,
        events,
        ingress,
        store,
        _scheduler(store, path),
        processor,
        CatalogQuery(store),
    )

    for topic, router_type in (
        (FROBS_TOPIC, FrobsEventRouter),
        ("github", GithubEventRouter),
        ("gitlab", GitlabEventRouter),
    ):
        if topic in topics:
            router = router_type(events, topic)
            router.subscribe()
            runtime.routers.append(router)
    if FROBS_TOPIC in topics:
        ingress.add_payload_check(FROBS_TOPIC, check_frobs_payload)
    if "gitlab" in topics:
        ingress.add_payload_check("gitlab", require_json_object)

    for github in github_providers(config):
        github.connect(
            EntityProviderConnection(store, github.get_provider_name(), runtime.query)
        )
        github.subscribe(events)
        runtime.providers.append(github)

    for provider, task_schedule in frobs_providers(config, order):
        provider.connect(
            EntityProviderConnection(store, provider.get_provider_name(), runtime.query)
        )
        provider.subscribe(events)
        runtime.providers.append(provider)
        runtime.scheduler.add_task(
            f"{provider.get_provider_name()}:refresh",
            task_schedule,
            lambda cancelled, p=provider: _sync_summary(p, cancelled),
        )
    return runtime


def _event_files(store: CatalogStore, path: Path):
    """The inbox and the event order, kept where the catalog is."""
    if isinstance(store, FileStore):
        return FileInbox(path / "events"), EventOrder(path / "events")
    from .database import Database
    from .events.postgres_inbox import PostgresInbox
    from .events.postgres_ordering import PostgresEventOrder

    database = Database(store.url, pool_size=16, name="frobs-events")
    return PostgresInbox(database), PostgresEventOrder(database)


def _scheduler(store: CatalogStore, path: Path) -> Scheduler:
    """Coordinated where the catalog is: in its folder, or in its database."""
    if isinstance(store, FileStore):
        return Scheduler(path / "scheduler.lock", path / "scheduler")
    from .postgres_coordination import PostgresCoordination

    return Scheduler(coordination=PostgresCoordination(store.url))


def _store(config: Config, path: Path) -> CatalogStore:
    """The file store, or the PostgreSQL store, whose driver is only loaded
    when it is configured (it would cost every worker 12 MiB)."""
    if config.get("catalog.store.type", "file") == "postgres":
        from .catalog.postgres_store import PostgresStore

        return PostgresStore(database_url(config))
    return FileStore(path)


def store_path(config: Config) -> Path:
    """The file store's folder (``catalog.store.path``), also where the file
    store keeps events and the scheduler's state."""
    return Path(config.get("catalog.store.path", "./data"))


def database_url(config: Config) -> str:
    """The PostgreSQL store's URL: ``catalog.store.url``, or ``DATABASE_URL``."""
    url = config.get("catalog.store.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise ConfigError(
            [
                f"{config.source_of('catalog.store.type')}: catalog.store.url: "
                "set it (or DATABASE_URL) to the database's URL, such as "
                "postgresql://user:password@host:5432/catalog"
            ]
        )
    from psycopg.conninfo import conninfo_to_dict  # only when PostgreSQL is used

    scheme = url.partition("://")[0].lower() if "://" in url else None
    try:
        if scheme not in (None, "postgresql", "postgres"):
            raise ValueError(f"its scheme is {scheme!r}")
        conninfo_to_dict(url)
    except Exception as exc:  # the driver's ProgrammingError, or a parse error
        reason = " ".join(str(exc).replace(url, "the URL").split())
        raise ConfigError(
            [
                f"{config.source_of('catalog.store.url') or 'DATABASE_URL'}: "
                f"catalog.store.url (or DATABASE_URL) is no PostgreSQL URL the "
                f"driver can use ({reason}); write it as "
                "postgresql://user:password@host:5432/catalog"
            ]
        ) from None
    return url


def _delivery_policy(config: Config) -> DeliveryPolicy:
    default = DeliveryPolicy()

    def duration(key: str, fallback):
        value = config.get(key)
        return fallback if value is None else parse_duration(value)

    return DeliveryPolicy(
        max_attempts=config.get("events.retry.maxAttempts", default.max_attempts),
        initial_delay=duration("events.retry.initialDelay", default.initial_delay),
        max_delay=duration("events.retry.maxDelay", default.max_delay),
        dedup_retention=duration(
            "events.deduplication.retention", default.dedup_retention
        ),
        dedup_without_id=duration(
            "events.deduplication.withoutDeliveryId", default.dedup_without_id
        ),
    )


def _sync_summary(provider: EntityProvider, cancelled) -> dict | None:
    result = provider.full_sync(cancelled)
    return result.counts() if result is not None else None


def _configure_logging() -> None:
    """Readable lines on stderr, or JSON lines with ``LOG_FORMAT=json``."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    fields = "%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"
    if os.environ.get("LOG_FORMAT", "").lower() == "json":
        handler.setFormatter(
            JsonFormatter(fields, rename_fields={"levelname": "level"})
        )
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
            )
        )
    root.addHandler(handler)
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
