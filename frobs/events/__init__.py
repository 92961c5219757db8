"""Generic event machinery: HTTP ingress, the events service, and routers.

Nothing here knows about the catalog or about any particular sender.
"""
