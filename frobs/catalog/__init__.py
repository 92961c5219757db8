"""Generic catalog machinery: entities, refs, mutations, stores and the read API.

Nothing here knows where entities come from; providers reach the catalog only
through an ``EntityProviderConnection``.
"""
