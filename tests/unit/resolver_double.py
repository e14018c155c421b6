"""Name resolvers that stand in for socket.getaddrinfo, for the outbound client's checks (shared/outbound.py)."""
from __future__ import annotations

import socket


class FakeResolver:
    """Stands in for socket.getaddrinfo: answers every name with the given addresses, and counts the lookups."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.looked_up: list[str] = []

    def __call__(self, host: str, port: int, *args, **kwargs) -> list[tuple]:
        self.looked_up.append(host)
        return [(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                for address in self.addresses]


def unresolvable(host: str, port: int, *args, **kwargs) -> list[tuple]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
