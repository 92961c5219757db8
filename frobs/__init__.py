"""A webhook-driven software catalog: Backstage's events backend and catalog in one.

Layout: ``frobs.events`` is the generic event machinery (ingress, events service,
routers), ``frobs.catalog`` the generic catalog machinery (entities, mutations,
stores, read API), ``frobs.scheduler`` runs providers' full syncs, and
``frobs.integration`` is the Frobs service on top of them.  ``frobs.app`` wires
them into one Flask application.
"""
