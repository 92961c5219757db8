"""One GitHub provider per configured ``catalog.providers.github.<id>``."""

from __future__ import annotations

from ..config import Config
from .provider import GithubEntityProvider, GithubProviderSettings


def github_providers(config: Config) -> list[GithubEntityProvider]:
    return [
        GithubEntityProvider(
            GithubProviderSettings(
                id=github_id,
                organization=settings["organization"],
                catalog_path=settings.get("catalogPath", "/catalog-info.yaml"),
                branch=settings.get("branch"),
            )
        )
        for github_id, settings in (
            config.get("catalog.providers.github") or {}
        ).items()
    ]
