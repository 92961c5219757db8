"""Ready-made routers for the senders people use most: GitHub and GitLab.

GitHub names the event in the ``x-github-event`` header (``github.push``); GitLab
names it in the payload's ``object_kind``, or ``event_name`` for system hooks
(``gitlab.merge_request``).
"""

from __future__ import annotations

from .router import HeaderRouter, PayloadFieldRouter


class GithubEventRouter(HeaderRouter):
    header = "x-github-event"


class GitlabEventRouter(PayloadFieldRouter):
    fields = ("object_kind", "event_name")
