"""Which validators guard which topic, as the configuration says.

- ``events.modules.github.webhookSecret``: GitHub's ``x-hub-signature-256`` on topic
  ``github`` (the topic gets an endpoint even when not listed, as in Backstage);
- ``events.modules.gitlab.webhookSecret``: GitLab's ``x-gitlab-token`` on ``gitlab``;
- ``events.http.signatures.<topic>``: a generic HMAC (``type: hmac``, with
  ``header``, ``algorithm``, ``prefix``, ``encoding``) or Standard Webhooks
  (``type: standard-webhooks``, ``toleranceSeconds``), each with a list of
  ``secrets`` so one can be rotated; empty entries (an unset ``${VAR:-}``) are
  skipped.

Building never logs a secret.
"""

from __future__ import annotations

from ..config import Config, ConfigError
from .signatures import (
    HmacSignatureValidator,
    StandardWebhooksValidator,
    github_signature_validator,
    gitlab_token_validator,
)
from .validators import RequestValidator

SENDER_TOPICS = {"github": github_signature_validator, "gitlab": gitlab_token_validator}


def topic_validators(config: Config) -> dict[str, list[RequestValidator]]:
    validators: dict[str, list[RequestValidator]] = {}
    problems = []

    for topic, make in SENDER_TOPICS.items():
        secret = config.get(f"events.modules.{topic}.webhookSecret")
        if secret:
            validators.setdefault(topic, []).append(make(secret))

    for topic, settings in (config.get("events.http.signatures") or {}).items():
        key = f"events.http.signatures.{topic}"
        try:
            validators.setdefault(topic, []).append(_signature(settings))
        except ValueError as exc:
            problems.append(f"{config.source_of(key)}: {key}: {exc}")

    if problems:
        raise ConfigError(problems)
    return validators


def _signature(settings: dict) -> RequestValidator:
    secrets = [s for s in settings["secrets"] if s]
    if settings["type"] == "standard-webhooks":
        return StandardWebhooksValidator(
            secrets, tolerance=settings.get("toleranceSeconds", 300)
        )
    return HmacSignatureValidator(
        settings["header"],
        secrets,
        algorithm=settings.get("algorithm", "sha256"),
        prefix=settings.get("prefix", ""),
        encoding=settings.get("encoding", "hex"),
    )
