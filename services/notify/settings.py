"""Notify's own settings, beside the shared ones (shared.config.Settings): mail, webhooks, links, templates."""
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
    allowed_networks: str | None  # CIDRs webhooks may reach although private (e.g. 127.0.0.0/8 for a local receiver)
    webhook_timeout_s: float
    retry_for_s: float  # how long a failing delivery is retried before it is marked failed
    suspend_after: int  # consecutive failures that suspend a receiver until its subscription is saved again
    link_base: str  # the city's front end, where a notice's link leads
    templates_dir: Path | None  # a city's own templates (same layout as services/notify/templates)
    delivery_threads: int

    @classmethod
    def from_env(cls, env: dict | os._Environ | None = None) -> NotifySettings:
        env = os.environ if env is None else env
        run_dir = Path(env.get("WOODPECKER_RUN_DIR") or ".run")
        return cls(smtp_url=env.get("SMTP_URL") or None, mail_from=env.get("NOTIFY_MAIL_FROM") or DEFAULT_SENDER,
                   mail_dir=Path(env.get("NOTIFY_MAIL_DIR") or run_dir / "mail"),
                   allowed_networks=env.get("NOTIFY_ALLOWED_NETWORKS") or None,
                   webhook_timeout_s=float(env.get("NOTIFY_WEBHOOK_TIMEOUT_S", "5")),
                   retry_for_s=float(env.get("NOTIFY_RETRY_FOR_S", str(24 * 3600))),
                   suspend_after=int(env.get("NOTIFY_SUSPEND_AFTER", "20")),
                   link_base=env.get("NOTIFY_LINK_BASE") or "http://127.0.0.1:8001",
                   templates_dir=Path(env["NOTIFY_TEMPLATES_DIR"]) if env.get("NOTIFY_TEMPLATES_DIR") else None,
                   delivery_threads=int(env.get("NOTIFY_DELIVERY_THREADS", "8")))
