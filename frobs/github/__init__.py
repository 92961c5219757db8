"""The GitHub integration: push and repository webhooks keep Location entities.

Like Backstage's ``GithubEntityProvider`` driven by events, each provider
(``catalog.providers.github.<id>``) turns ``github.push`` and ``github.repository``
events of one organization into Location entities pointing at catalog files.
"""
