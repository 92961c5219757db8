"""Fixtures every suite may use: the stores (see ``stores``)."""

from stores import open_store, postgres_url  # noqa: F401
