"""gunicorn settings shared by every service's web process.

gthread workers; the app (and so its MongoDB and broker clients) is created in each worker after
fork. The web process only answers HTTP: each service's consumer and outbox relay run in its worker
process (`python -m services.<name>.worker`).
"""
import os

worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None
