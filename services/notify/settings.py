"""Notify's own settings, beside the shared ones (shared.config.Settings): mail, webhooks, links, templates, the key
that seals secrets."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SENDER = "Woodpecker 啄木鸟 <noreply@woodpecker.example>"


@dataclass(frozen=True)
class NotifySettings:
    smtp_url: str | None  # unset: mail is written as .eml files under the run folder
    mail_from: str
    mail_dir: Path
    allowed_networks: str | None  # CIDRs staff webhooks may reach although private (e.g. 127.0.0.0/8 in development)
    attempt_deadline_s: float  # one delivery attempt, webhook or mail, from connecting to the last byte of the answer
    retry_for_s: float  # how long a failing delivery is retried before it is marked failed
    suspend_after: int  # consecutive failures that suspend a receiver until its subscription is saved again
    link_base: str  # the city's front end, where a notice's link leads
    templates_dir: Path | None  # a city's own templates (same layout as services/notify/templates)
    webhook_threads: int
    mail_threads: int
    secret_key: str | None  # seals webhook secrets and keys the confirmation codes' hashes (NOTIFY_SECRET_KEY)
    secret_overlap_s: float  # after a rotation, how long the old secret's signature is sent beside the new one's

    @classmethod
    def from_env(cls, env: dict | os._Environ | None = None) -> NotifySettings:
        env = os.environ if env is None else env
        run_dir = Path(env.get("WOODPECKER_RUN_DIR") or ".run")
        return cls(smtp_url=env.get("SMTP_URL") or None, mail_from=env.get("NOTIFY_MAIL_FROM") or DEFAULT_SENDER,
                   mail_dir=Path(env.get("NOTIFY_MAIL_DIR") or run_dir / "mail"),
                   allowed_networks=env.get("NOTIFY_ALLOWED_NETWORKS") or None,
                   attempt_deadline_s=_positive(env, "NOTIFY_ATTEMPT_DEADLINE_S", 10.0),
                   retry_for_s=float(env.get("NOTIFY_RETRY_FOR_S", str(24 * 3600))),
                   suspend_after=int(env.get("NOTIFY_SUSPEND_AFTER", "20")),
                   link_base=env.get("NOTIFY_LINK_BASE") or "http://127.0.0.1:8001",
                   templates_dir=Path(env["NOTIFY_TEMPLATES_DIR"]) if env.get("NOTIFY_TEMPLATES_DIR") else None,
                   webhook_threads=int(_positive(env, "NOTIFY_DELIVERY_THREADS", 8)),
                   mail_threads=int(_positive(env, "NOTIFY_MAIL_THREADS", 4)),
                   secret_key=env.get("NOTIFY_SECRET_KEY") or None,
                   secret_overlap_s=float(env.get("NOTIFY_SECRET_OVERLAP_S", str(24 * 3600))))


def _positive(env: dict | os._Environ, name: str, default: float) -> float:
    raw = env.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ValueError(f"{name} must be a positive number, got {raw!r}")
    return value
