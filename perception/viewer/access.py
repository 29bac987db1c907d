"""Who may use the viewer: the Host header names an address it serves, and off loopback a token.

A page on any web site can make a local browser send requests to 127.0.0.1 (and, by rebinding its own
domain name to 127.0.0.1, read the answers: DNS rebinding). Such a request carries the attacker's name
in its Host header, so the viewer answers only requests whose Host is a name or address it serves, and
refuses a request whose Origin (sent with scripted cross-site requests) is another site. Served on an
address other machines reach, or on loopback for a graph with a keystore, it also asks for a token
(as Jupyter does): loopback is open to every local user, and a keystore means the graph is not theirs
to read. `percept view` then prints an address with `?token=...`; the first request with it gets a
cookie (HttpOnly, SameSite=Strict) that carries it for the rest of the session; a script may send
`Authorization: Bearer TOKEN` instead.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import secrets
import socket
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlparse

COOKIE = "percept_view_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def served_names(host: str, extra: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """The names a browser may put in the Host header to reach a server bound to `host`: the address
    itself, loopback's names where it serves loopback, and this machine's names and addresses where
    it serves every interface; `extra` adds names only the user knows (a DNS alias, a proxy)."""
    names = {host.lower(), *(name.lower() for name in extra)}
    every_interface = host in ("0.0.0.0", "::", "")
    if every_interface or is_loopback(host):
        names |= LOOPBACK_NAMES
    if every_interface:
        hostname = socket.gethostname()
        names |= {hostname.lower(), f"{hostname.lower()}.local", socket.getfqdn().lower()}
        with contextlib.suppress(OSError):
            names |= {str(info[4][0]).lower() for info in socket.getaddrinfo(hostname, None)}
    names.discard("")
    return frozenset(names)


def _address_names(address: str) -> frozenset[str]:
    """An IP address as a Host header may write it (an IPv4-mapped IPv6 one also as IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return frozenset()
    mapped = getattr(ip, "ipv4_mapped", None)
    return frozenset({str(ip), *([str(mapped)] if mapped else [])})


def name_in(host_header: str) -> str:
    """The name of a Host header or an Origin's authority, without port or IPv6 brackets."""
    text = host_header.strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


class Access:
    """The viewer's checks, one call per request."""

    def __init__(self, host: str, token: str | None, extra_names: list[str] | tuple[str, ...] = ()) -> None:
        self.names = served_names(host, extra_names)
        self.token = token
        # A browser keeps cookies by host, not by port: two viewers on 127.0.0.1 (two graphs, each with
        # a keystore) under one name overwrote each other's, and the first page went 401. The server
        # names it after its port once bound (use_port).
        self.cookie_name = COOKIE

    def use_port(self, port: int) -> None:
        """Name the token's cookie after the port served, so viewers of one host keep theirs apart."""
        self.cookie_name = f"{COOKIE}_{port}"

    @classmethod
    def for_address(
        cls,
        host: str,
        token: str | None,
        extra_names: list[str] | tuple[str, ...] = (),
        keystore: bool = False,
    ) -> Access:
        """Loopback needs no token (unless one is given) when the graph has no keystore; any other
        address, and loopback with a keystore (`keystore`: this process has one), gets a random one.
        Without a keystore any local user can read the graph itself, so a token on loopback would
        protect nothing; with one, the viewer would be the only way in for them."""
        if token is None and (keystore or not is_loopback(host)):
            token = secrets.token_urlsafe(18)
        return cls(host, token, extra_names)

    def refusal(
        self, headers: dict[str, str], query: dict[str, str], local_address: str = ""
    ) -> tuple[HTTPStatus, str] | None:
        """Why this request may not be answered (status and one line), or None when it may.
        `local_address`: the address the request came in on, which is served whatever the machine's
        names resolve to (a rebinding page puts its own domain name in the Host header, never this)."""
        host = headers.get("host", "")
        served = self.names | _address_names(local_address)
        if name_in(host) not in served:
            return (
                HTTPStatus.FORBIDDEN,
                f"Host {host!r} is not an address this viewer serves ({', '.join(sorted(served))}); "
                "a name of your own: percept view --allow-host NAME",
            )
        origin = headers.get("origin")
        if origin and origin != "null" and name_in(urlparse(origin).netloc) not in served:
            return HTTPStatus.FORBIDDEN, f"Origin {origin!r} is another site"
        if self.token is None or self.presents_token(headers, query):
            return None
        return (
            HTTPStatus.UNAUTHORIZED,
            "this viewer needs its token: open the address `percept view` printed (it ends in ?token=...)",
        )

    def presents_token(self, headers: dict[str, str], query: dict[str, str]) -> bool:
        """The request carries the token: in the query, a cookie or a bearer header."""
        assert self.token is not None
        offered = [query.get("token", "")]
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            offered.append(authorization[7:].strip())
        with contextlib.suppress(CookieError):
            cookie = SimpleCookie(headers.get("cookie", ""))
            if self.cookie_name in cookie:
                offered.append(cookie[self.cookie_name].value)
        return any(hmac.compare_digest(o.encode(), self.token.encode()) for o in offered if o)

    def cookie_for(self, query: dict[str, str]) -> str | None:
        """A Set-Cookie value when the token came in the address (later requests then carry it)."""
        if self.token is None or not query.get("token"):
            return None
        return f"{self.cookie_name}={self.token}; HttpOnly; SameSite=Strict; Path=/"
