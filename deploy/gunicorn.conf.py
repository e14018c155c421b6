"""gunicorn settings shared by every service's web process.

gthread workers; the app (and so its MongoDB and broker clients) is created in each worker after
fork. The web process answers HTTP and publishes at once the events its requests store (its relay's
thread starts with the first of them); each service's consumer, the outbox sweep and periodic work run in
its worker process (`python -m services.<name>.worker`).
"""
import os

worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None
