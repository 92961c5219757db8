"""``GithubEntityProvider``: Location entities from GitHub push and repository events.

For the configured organization only (``organization.login``, case-insensitive):

- ``github.push`` on the default branch (or the configured ``branch``): each file
  added in any commit that matches ``catalogPath`` (a glob; a leading ``/`` means
  the repository root, ``**`` any folders) becomes a Location entity targeting
  ``<repository>/blob/<branch>/<file>``; each such file removed is removed.
  Modified files change no Location and are only logged.
- ``github.repository``: ``archived`` and ``deleted`` remove the repository's
  Location, ``transferred`` and ``unarchived`` add it, ``renamed`` removes the one
  at the old name and adds the new one; other actions are ignored.

Locations are named as Backstage names them (``generated-`` and the SHA-1 of
``url:<target>``), typed ``url``, with ``presence: optional``, and carry location
key ``github-provider:<id>``.  The provider has no full sync: it would need
GitHub's API, which this service does not call.  It never fetches the files.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

from ..catalog.mutation import DeferredEntity, DeltaMutation, EntityRefRemoval
from ..catalog.provider import EntityProvider, EntityProviderConnection
from ..events.params import EventParams
from ..events.service import EventsService

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GithubProviderSettings:
    id: str
    organization: str
    catalog_path: str = "/catalog-info.yaml"
    branch: str | None = None


def location_entity(target: str) -> dict:
    """The Location entity Backstage makes for a URL target."""
    ref = f"url:{target}"
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Location",
        "metadata": {
            "name": "generated-" + hashlib.sha1(ref.encode()).hexdigest(),
            "annotations": {
                "backstage.io/managed-by-location": ref,
                "backstage.io/managed-by-origin-location": ref,
            },
        },
        "spec": {"type": "url", "target": target, "presence": "optional"},
    }


def path_pattern(catalog_path: str) -> re.Pattern:
    """A catalog path glob as a regex over repository-relative file paths."""
    glob = catalog_path.lstrip("/")
    pieces = re.split(r"(\*\*/|\*\*|\*|\?)", glob)
    translated = {
        "**/": "(?:.*/)?",
        "**": ".*",
        "*": "[^/]*",
        "?": "[^/]",
    }
    return re.compile("".join(translated.get(p, re.escape(p)) for p in pieces if p))


class GithubEntityProvider(EntityProvider):
    def __init__(self, settings: GithubProviderSettings) -> None:
        self.settings = settings
        self.location_key = f"github-provider:{settings.id}"
        self.pattern = path_pattern(settings.catalog_path)
        self._connection: EntityProviderConnection | None = None

    def get_provider_name(self) -> str:
        return f"github-provider:{self.settings.id}"

    def connect(self, connection: EntityProviderConnection) -> None:
        self._connection = connection

    def subscribe(self, events: EventsService) -> None:
        events.subscribe(
            self.get_provider_name(),
            ["github.push", "github.repository"],
            self.on_event,
        )

    def on_event(self, params: EventParams) -> None:
        mutations = self.mutations(params.topic, params.event_payload)
        for mutation in mutations:
            result = self._connection.apply_mutation(mutation)
            logger.info(
                "%s applied %s: %s",
                self.get_provider_name(),
                params.topic,
                {k: v for k, v in result.counts().items() if v},
            )

    def mutations(self, topic: str, payload: object) -> list[DeltaMutation]:
        """The delta mutations an event makes, in order (none when it is ignored)."""
        if not isinstance(payload, dict) or not self._our_organization(payload):
            return []
        repository = payload.get("repository")
        if not isinstance(repository, dict) or not repository.get("html_url"):
            return []
        if topic == "github.push":
            return self._push(payload, repository)
        if topic == "github.repository":
            return self._repository(payload, repository)
        return []

    def _our_organization(self, payload: dict) -> bool:
        login = (payload.get("organization") or {}).get("login")
        if not isinstance(login, str) or (
            login.lower() != self.settings.organization.lower()
        ):
            logger.info(
                "%s ignored an event of organization %s", self.location_key, login
            )
            return False
        return True

    def _branch(self, repository: dict) -> str:
        return self.settings.branch or repository.get("default_branch") or "main"

    def _push(self, payload: dict, repository: dict) -> list[DeltaMutation]:
        branch = self._branch(repository)
        if payload.get("ref") != f"refs/heads/{branch}":
            logger.info(
                "%s ignored a push to %s (it watches %s)",
                self.location_key,
                str(payload.get("ref"))[:100],
                branch,
            )
            return []
        added, removed, modified = [], [], []
        for commit in payload.get("commits") or []:
            added += [f for f in commit.get("added") or [] if self._matches(f)]
            removed += [f for f in commit.get("removed") or [] if self._matches(f)]
            modified += [f for f in commit.get("modified") or [] if self._matches(f)]
        if modified:
            logger.info(
                "%s: %s changed; its Location stays as it is",
                self.get_provider_name(),
                ", ".join(modified),
            )
        if not added and not removed:
            return []
        target = f"{repository['html_url']}/blob/{branch}/"
        return [
            DeltaMutation(
                added=[self._location(target + f) for f in added],
                removed=[self._removal(target + f) for f in removed],
            )
        ]

    def _repository(self, payload: dict, repository: dict) -> list[DeltaMutation]:
        action = payload.get("action")
        path = self.settings.catalog_path.lstrip("/")
        target = f"{repository['html_url']}/blob/{self._branch(repository)}/{path}"
        if action in ("archived", "deleted"):
            return [DeltaMutation(removed=[self._removal(target)])]
        if action in ("transferred", "unarchived"):
            return [DeltaMutation(added=[self._location(target)])]
        if action == "renamed":
            old_name = (
                ((payload.get("changes") or {}).get("repository") or {}).get("name")
                or {}
            ).get("from")
            if not isinstance(old_name, str):
                return []
            base, _, _ = repository["html_url"].rpartition("/")
            old = f"{base}/{old_name}/blob/{self._branch(repository)}/{path}"
            return [
                DeltaMutation(removed=[self._removal(old)]),
                DeltaMutation(added=[self._location(target)]),
            ]
        return []

    def _matches(self, file: object) -> bool:
        return isinstance(file, str) and bool(self.pattern.fullmatch(file))

    def _location(self, target: str) -> DeferredEntity:
        return DeferredEntity(location_entity(target), self.location_key)

    def _removal(self, target: str) -> EntityRefRemoval:
        name = location_entity(target)["metadata"]["name"]
        return EntityRefRemoval(f"location:default/{name}", self.location_key)
