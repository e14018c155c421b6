"""Hours' own settings, beside the shared ones (shared.config.Settings)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

# Where `make up` serves hours.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8003"
# Scheme, host, maybe a port, maybe a path (RFC 3986's path characters): no credentials, query or fragment.
_PUBLIC_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?")


@dataclass(frozen=True)
class HoursSettings:
    # Where the public reaches hours: a proof's QR code and printed link lead to {public_url}/v1/proofs/{code}.
    # Never taken from a request, whose Host header its sender chooses.
    public_url: str = DEFAULT_PUBLIC_URL

    @classmethod
    def from_env(cls, env: dict | os._Environ | None = None) -> HoursSettings:
        env = os.environ if env is None else env
        return cls(public_url=public_url(env.get("HOURS_PUBLIC_URL") or DEFAULT_PUBLIC_URL))


def public_url(raw: str) -> str:
    """An http(s) base URL, maybe with a path prefix, without its trailing slash; anything else is refused at
    start rather than printed on every proof."""
    match = _PUBLIC_URL.fullmatch(raw)
    if match is None or not 0 < int((match.group(1) or ":80")[1:]) < 65536:
        raise ValueError(f"HOURS_PUBLIC_URL must be an http:// or https:// address, maybe with a port and a path, "
                         f"without credentials, query or fragment (e.g. https://woodpecker.example.gov.cn/hours), "
                         f"got {raw!r}")
    return raw.rstrip("/")
