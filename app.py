"""The WSGI entry point: ``gunicorn app:app`` serves the service."""

from frobs.app import create_app

app = create_app()
