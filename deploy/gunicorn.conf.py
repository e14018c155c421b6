"""gunicorn settings shared by every service's web process.

gthread workers; the app (and so its MongoDB and broker clients) is created in each worker after
fork. The web process answers HTTP and publishes at once the events its requests store (its relay's
thread starts with the first of them); each service's consumer, the outbox sweep and periodic work run in
its worker process (`python -m services.<name>.worker`).
"""
import json
import os

from gunicorn import util

from shared.errors import HTTP_SLUGS, PROBLEM_BASE, PROBLEM_MEDIA_TYPE

worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None


# gunicorn refuses some requests before any service sees them: a request line over limit_request_line (414, a URL
# too long), headers over their limits (431), a request it cannot parse (400). It would answer with an HTML page;
# like every other error here, the answer is problem+json (docs/api.md, "Errors").
def write_problem(sock, status_int: int, reason: str, mesg: str) -> None:
    body = json.dumps({"type": PROBLEM_BASE + HTTP_SLUGS.get(status_int, "malformed-request"), "title": reason,
                       "status": status_int, "detail": mesg}, ensure_ascii=True).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: {PROBLEM_MEDIA_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin1") + body)


util.write_error = write_problem  # gunicorn's workers answer through it (workers/base.py, handle_error)
