"""Deployment: local process runner, gunicorn configuration, images."""
