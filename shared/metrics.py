"""Prometheus metrics shared by every service (exposed at GET /metrics)."""
from prometheus_client import Counter, Gauge, Histogram

http_requests = Counter("woodpecker_http_requests_total", "HTTP requests served",
                        ["service", "method", "endpoint", "status"])
http_latency = Histogram("woodpecker_http_request_seconds", "HTTP request latency",
                         ["service", "method", "endpoint"])
events_published = Counter("woodpecker_events_published_total", "Events confirmed by the broker",
                           ["service", "type"])
events_unroutable = Counter("woodpecker_events_unroutable_total",
                            "Events the broker returned because no queue was bound; kept for retry",
                            ["service", "type"])
outbox_pending = Gauge("woodpecker_outbox_pending", "Events the last outbox sweep found and the broker did not take",
                       ["service"])
outbox_swept = Counter("woodpecker_outbox_swept_total",
                       "Events the outbox sweep published: left behind by a process that died, or by a broker "
                       "outage; none while all is well", ["service"])
events_consumed = Counter("woodpecker_events_consumed_total", "Consumed events by outcome",
                          ["queue", "outcome"])
admission_backlog = Gauge("woodpecker_admission_backlog_messages",
                          "Ready messages in the services' queues at the admission's last reading", ["service"])
admission_refused = Counter("woodpecker_admission_refused_total",
                            "Requests answered 503 because the services' queues were over the admission's limit",
                            ["service"])
spreadsheets_served = Counter("woodpecker_spreadsheets_served_total",
                              "XLSX workbooks answered, by kind and whether they were built or served as stored",
                              ["kind", "source"])
identity_provider_fetches = Counter("woodpecker_identity_provider_fetches_total",
                                    "Fetches of the OpenID Connect provider's discovery document and keys, by outcome "
                                    "(fetched, failed); at most one a minute per process", ["service", "outcome"])
