"""gunicorn settings shared by every service's web process.

gthread workers; the app (and so its MongoDB and broker clients) is created in each worker after
fork. With the embedded store there is one worker, which also runs the consumer and outbox relay
in threads, because the data lives in that process only.
"""
import os

from shared.runtime import start_in_process

worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
workers = 1 if not os.environ.get("MONGO_URL") else int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None


def post_worker_init(worker):
    app = worker.wsgi
    if app.config["WOODPECKER_SETTINGS"].inprocess_workers:
        worker.woodpecker_background = start_in_process(app)


def worker_exit(server, worker):
    background = getattr(worker, "woodpecker_background", None)
    if background is not None:
        background.stop()
