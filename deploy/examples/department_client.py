#!/usr/bin/env python3
"""Call Woodpecker's API as your department's system: a token from the city's identity provider (the OAuth 2.0
client credentials grant), then your department's cases from the routing service. A small program to copy and adapt.

The city office registers your system with its OpenID Connect provider as a confidential client, with the
department role and your department (docs/identity.md), and gives you its client id and secret. This program finds
the provider's token endpoint in its discovery document, asks it for a token with those credentials, and calls
routing with `Authorization: Bearer <token>`. It needs only the standard library.

Usage:

    export WOODPECKER_CLIENT_SECRET=...          # never on the command line: other users see it in `ps`
    python department_client.py --issuer https://sso.example.gov.cn/realms/linyi \\
        --client-id traffic-police-system --routing-url https://woodpecker.example.gov.cn/routing
    python department_client.py ... --status accepted          # the cases you have taken on
    python department_client.py ... --accept 6650a1f0c2d94e1b8a3f0e17   # take a dispatched case on

A line looks like this (due_at in Asia/Shanghai time):

    [due 2026-05-11 14:00] dispatched case 6650a1f0c2d94e1b8a3f0e17 (traffic.parking): 人行道上停放多辆机动车

A token is good for minutes (the provider says how long): a program that keeps running asks for a new one when
the old one is about to expire, or when the API answers 401. Exit status: 0 done, 1 the provider or the API
refused (the reason is printed on stderr).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

try:
    from zoneinfo import ZoneInfo

    LOCAL_TZ = ZoneInfo("Asia/Shanghai")
except Exception:  # no time-zone database (Windows without tzdata): China has had no DST since 1991
    LOCAL_TZ = timezone(timedelta(hours=8), "CST")

TIMEOUT_S = 10


class Refused(Exception):
    """The provider or the API said no; the message says who and why."""


def call(request: urllib.request.Request) -> dict:
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as error:
        body = error.read().decode("utf-8", "replace")
        try:  # Woodpecker answers problem+json, a provider {"error", "error_description"} (RFC 6749, 5.2)
            parsed = json.loads(body)
            said = [parsed.get(name) for name in ("detail", "error", "error_description") if parsed.get(name)]
            body = ": ".join(said) or body
        except (ValueError, AttributeError):
            pass
        raise Refused(f"{request.get_method()} {request.full_url}: {error.code} {body}") from None


def client_credentials_token(issuer: str, client_id: str, client_secret: str) -> str:
    """An access token for this client from the provider's token endpoint (RFC 6749, section 4.4)."""
    discovery = call(urllib.request.Request(issuer.rstrip("/") + "/.well-known/openid-configuration"))
    basic = base64.b64encode(f"{urllib.parse.quote(client_id)}:{urllib.parse.quote(client_secret)}".encode())
    request = urllib.request.Request(
        discovery["token_endpoint"], data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
        headers={"Authorization": f"Basic {basic.decode()}", "Content-Type": "application/x-www-form-urlencoded"})
    return call(request)["access_token"]


def local_time(value: str | None) -> str:
    if not value:
        return "no deadline"
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def describe(case: dict) -> str:
    description = " ".join(str(case.get("description") or "").split())
    return (f"[due {local_time(case.get('due_at'))}] {case['status']} case {case['id']} "
            f"({case.get('category')}): {description}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issuer", required=True, help="the city's identity provider (its issuer URL)")
    parser.add_argument("--client-id", required=True, help="your system's client id at the provider")
    parser.add_argument("--routing-url", required=True, help="Woodpecker's routing service")
    parser.add_argument("--status", default="dispatched", help="which of your cases to list (default: dispatched)")
    parser.add_argument("--accept", metavar="CASE_ID", help="take this dispatched case on instead of listing")
    args = parser.parse_args(argv)
    secret = os.environ.get("WOODPECKER_CLIENT_SECRET")
    if not secret:
        parser.error("set WOODPECKER_CLIENT_SECRET to your system's client secret")
    routing = args.routing_url.rstrip("/")
    try:
        bearer = {"Authorization": f"Bearer {client_credentials_token(args.issuer, args.client_id, secret)}"}
        if args.accept:
            case_id = urllib.parse.quote(args.accept, safe="")
            print(describe(call(urllib.request.Request(f"{routing}/v1/cases/{case_id}/accept", data=b"",
                                                       headers=bearer, method="POST"))))
            return 0
        query = urllib.parse.urlencode({"status": args.status, "limit": 200})
        for case in call(urllib.request.Request(f"{routing}/v1/cases?{query}", headers=bearer))["items"]:
            print(describe(case))
    except (Refused, urllib.error.URLError) as failure:
        print(f"refused: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
