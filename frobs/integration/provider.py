"""``FrobsEntityProvider``: one Frobs environment's share of the catalog.

Provider ``frobs-<env>`` holds every entity with location key
``frobs-provider:<env>``.  It subscribes to ``frobs.add``, ``frobs.modify`` and
``frobs.delete``:

- add: read the frob's document and add its entities;
- modify: read the frob and its previous state, remove what the previous state
  had and the new one lacks (and anything else the frob still holds that the new
  state lacks), add or update the rest;
- delete: remove every entity it holds with that frob id, whatever the source
  says (it usually answers 404 by then).

Its full sync reads the whole listing and applies a ``full`` mutation, so the
catalog matches the source exactly; a listing that cannot be read changes nothing.
A frob that cannot be mapped, or maps to an invalid entity, is refused on its own
with a log line naming the frob id and the rule; its siblings still apply.  One
frob never takes another frob's entity (two frobs naming one entity ref, even in
different case): the later one is refused as a conflict naming the holder.  A
modify whose new state is partly refused removes nothing of the previous state.

The provider never builds a URL from an id that is not a DNS label, and never
touches entities of another location key.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

from ..bulk import collection_paused, settle
from ..catalog.apply import entity_problems
from ..catalog.mutation import (
    DeltaMutation,
    EntityRefRemoval,
    FullMutation,
    MutationResult,
    Outcome,
)
from ..catalog.provider import EntityProvider, EntityProviderConnection
from ..catalog.store import StoredEntity
from ..events.delivery import current_delivery
from ..events.ordering import EventOrder
from ..events.params import EventParams
from ..events.service import EventsService
from ..reading import ReadFailed, ReadRefused, SourceNotFound, UrlReader
from .batch import FrobBatch, frob_of
from .mapping import ID_ANNOTATION, frob_id_of, parse_document
from .router import TOPIC, is_frob_id

logger = logging.getLogger(__name__)

#: The search key an event's frob is found by.
_HELD_BY_FROB = f"metadata.annotations.{ID_ANNOTATION}"

DEFAULT_DATA_URL = "https://frobs-{env}.example.com/data"
DEFAULT_ITEM_URL = "https://frobs-{id}.example.com/data"


@dataclass(frozen=True)
class FrobsProviderSettings:
    env: str
    data_url: str = DEFAULT_DATA_URL
    item_url: str = DEFAULT_ITEM_URL
    previous_state_url: str = "{itemUrl}/previous-state"
    max_deletion_ratio: float = 0.5
    allow_empty_source: bool = False

    def data(self) -> str:
        return self.data_url.replace("{env}", self.env)

    def item(self, frob_id: str) -> str:
        return self.item_url.replace("{env}", self.env).replace("{id}", frob_id)

    def previous_state(self, frob_id: str) -> str:
        template = self.previous_state_url.replace("{itemUrl}", self.item_url)
        return template.replace("{env}", self.env).replace("{id}", frob_id)


class FrobsEntityProvider(EntityProvider):
    def __init__(
        self,
        settings: FrobsProviderSettings,
        reader: UrlReader,
        order: EventOrder | None = None,
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.order = order
        self.location_key = f"frobs-provider:{settings.env}"
        self.managed_by = f"url:{settings.data()}"
        self._connection: EntityProviderConnection | None = None

    def get_provider_name(self) -> str:
        return f"frobs-{self.settings.env}"

    def connect(self, connection: EntityProviderConnection) -> None:
        self._connection = connection
        connection.will_filter_on(_HELD_BY_FROB)

    @property
    def connection(self) -> EntityProviderConnection:
        if self._connection is None:
            raise RuntimeError(f"{self.get_provider_name()} is not connected yet")
        return self._connection

    def subscribe(self, events: EventsService) -> None:
        events.subscribe(
            self.get_provider_name(),
            [f"{TOPIC}.add", f"{TOPIC}.modify", f"{TOPIC}.delete"],
            self.on_event,
        )

    # Events

    def on_event(self, params: EventParams) -> None:
        payload = params.event_payload
        frob_id = payload.get("id") if isinstance(payload, dict) else None
        if not is_frob_id(frob_id):
            logger.warning(
                "%s ignores an event whose id is not a frob id",
                self.get_provider_name(),
            )
            return

        action = params.topic.rsplit(".", 1)[-1]
        delivery = current_delivery()
        received_at = delivery.received_at if delivery else time.time_ns()
        with self._turn(frob_id, received_at) as ours:
            if not ours:
                logger.info(
                    "%s skipped %s of frob %s: a newer event for it was handled",
                    self.get_provider_name(),
                    action,
                    frob_id,
                )
                return
            if action == "add":
                result = self.add(frob_id)
            elif action == "modify":
                result = self.modify(frob_id)
            else:
                result = self.delete(frob_id)
        if result is not None:
            logger.info(
                "%s applied %s of frob %s: %s",
                self.get_provider_name(),
                action,
                frob_id,
                _counts(result),
            )

    def _turn(self, frob_id: str, received_at: int):
        """This frob's turn: one event at a time for it, the later-received last."""
        if self.order is None:
            return contextlib.nullcontext(True)
        return self.order.turn(self._order_key(frob_id), received_at)

    def _order_key(self, frob_id: str) -> str:
        return f"{self.get_provider_name()}:{frob_id}"

    def add(self, frob_id: str) -> MutationResult | None:
        batch = self._read_frob(self.settings.item(frob_id), frob_id)
        if batch is None:
            return None
        batch.claim(self.get_provider_name(), self.connection.store.snapshot())
        return self._apply(DeltaMutation(added=batch.entities), batch)

    def modify(self, frob_id: str) -> MutationResult | None:
        batch = self._read_frob(self.settings.item(frob_id), frob_id)
        if batch is None:
            return None
        previous = self._read_frob(
            self.settings.previous_state(frob_id), frob_id, missing_ok=True
        )
        snapshot = self.connection.store.snapshot()
        batch.claim(self.get_provider_name(), snapshot)

        removed = []
        if not self._refuses_any(batch):
            # Everything the frob holds that its new state lacks: what the previous
            # state had, and anything an older, skipped event left behind.
            held = {record.ref for record in self._held_by(frob_id)}
            gone = held - batch.refs()
            unlisted = gone - (previous.refs() if previous is not None else set())
            if unlisted:
                logger.info(
                    "%s: frob %s also held %s, which its previous state does not list",
                    self.get_provider_name(),
                    frob_id,
                    ", ".join(sorted(unlisted)),
                )
            removed = [EntityRefRemoval(ref, self.location_key) for ref in sorted(gone)]
        mutation = DeltaMutation(added=batch.entities, removed=removed)
        return self._apply(mutation, batch)

    def delete(self, frob_id: str) -> MutationResult:
        removed = [
            EntityRefRemoval(record.ref, self.location_key)
            for record in self._held_by(frob_id)
        ]
        return self.connection.apply_mutation(DeltaMutation(removed=removed))

    def _held_by(self, frob_id: str) -> list[StoredEntity]:
        """The entities this provider holds for one frob."""
        held = self.connection.held_entities(f"{_HELD_BY_FROB}={frob_id}")
        return [record for record in held if frob_of(record.entity) == frob_id]

    def _refuses_any(self, batch: FrobBatch) -> bool:
        """Whether part of the frob's new state would be refused.

        Then nothing of its previous state is removed, so a frob renamed to an
        invalid name keeps its last good entities.
        """
        return bool(batch.refusals) or any(
            entity_problems(item.entity) for item in batch.entities
        )

    # Full sync

    def full_sync(self, cancelled: threading.Event) -> MutationResult | None:
        try:
            with collection_paused():
                return self._full_sync(cancelled)
        finally:
            settle()

    def _full_sync(self, cancelled: threading.Event) -> MutationResult | None:
        url = self.settings.data()
        read_at = time.time_ns()
        batch = self._batch(parse_document(self._read(url), url))
        batch.claim(self.get_provider_name())
        if cancelled.is_set():
            logger.warning(
                "%s full sync was cancelled before applying", self.get_provider_name()
            )
            return None
        mutation = FullMutation(
            batch.entities,
            max_deletion_ratio=self.settings.max_deletion_ratio,
            allow_empty_source=self.settings.allow_empty_source,
            frozen=lambda transaction: self._changed_since(read_at, batch, transaction),
        )
        return self._apply(mutation, batch)

    def _changed_since(self, read_at: int, batch: FrobBatch, transaction) -> set[str]:
        """Refs of frobs that events changed after the listing was read."""
        if self.order is None:
            return set()
        prefix = f"{self.get_provider_name()}:"
        changed = {
            key[len(prefix) :]
            for key in self.order.changed_since(read_at)
            if key.startswith(prefix)
        }
        if not changed:
            return set()
        refs = batch.refs_of(changed)
        refs |= {
            record.ref
            for record in transaction.records()
            if record.source == self.get_provider_name()
            and frob_of(record.entity) in changed
        }
        return refs

    def _apply(self, mutation, batch: FrobBatch) -> MutationResult:
        """Apply, name the frob behind each refused entity, and count every refusal."""
        result = self.connection.apply_mutation(mutation)
        for refused in result.of(Outcome.INVALID):
            logger.warning(
                "%s refused frob %s: %s",
                self.get_provider_name(),
                batch.frob_of_item(refused.item),
                refused.message,
            )
        result.results.extend(batch.refusals)
        return result

    # Reading and mapping

    def _read(self, url: str) -> bytes:
        """Read from the source; a refusal or failure is logged with the reason."""
        try:
            return self.reader.read(url)
        except SourceNotFound:
            raise
        except ReadRefused as exc:
            logger.warning(
                "%s refused to read %s: %s", self.get_provider_name(), url, exc
            )
            raise
        except ReadFailed as exc:
            logger.warning(
                "%s could not read %s: %s", self.get_provider_name(), url, exc
            )
            raise

    def _read_frob(
        self, url: str, frob_id: str, missing_ok: bool = False
    ) -> FrobBatch | None:
        try:
            raw = self._read(url)
        except SourceNotFound:
            if not missing_ok:
                logger.warning(
                    "%s: frob %s is not in the source (%s); nothing applied",
                    self.get_provider_name(),
                    frob_id,
                    url,
                )
            return None
        frobs = list(parse_document(raw, url))

        foreign = [f for f in frobs if frob_id_of(f) != frob_id]
        if foreign:
            logger.warning(
                "%s: %d entries of %s are not frob %s and were skipped",
                self.get_provider_name(),
                len(foreign),
                url,
                frob_id,
            )
        return self._batch(f for f in frobs if frob_id_of(f) == frob_id)

    def _batch(self, frobs) -> FrobBatch:
        return FrobBatch.mapped(
            frobs, self.managed_by, self.location_key, self.get_provider_name()
        )


def _counts(result: MutationResult) -> str:
    counts = result.counts()
    refused = counts[Outcome.CONFLICT.value] + counts[Outcome.INVALID.value]
    return (
        f"{counts['added']} added, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged, {counts['removed']} removed, "
        f"{refused} refused"
    )
