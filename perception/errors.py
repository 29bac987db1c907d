"""Exceptions raised by the runtime. Each names the thing, what was expected and what was found."""

from __future__ import annotations

import difflib


def did_you_mean(name: str, known: list[str] | set[str]) -> str:
    """`; did you mean X?` for the closest of `known` to a mistyped `name`, or nothing."""
    close = difflib.get_close_matches(name, sorted(known), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def reason(exc: BaseException) -> str:
    """An exception's text, or its type's name where it has none (msgpack raises some without)."""
    return str(exc) or type(exc).__name__


class PerceptError(Exception):
    """Base class of every error the runtime raises on purpose."""


class InvalidNameError(PerceptError, ValueError):
    """A topic, service, node or namespace name breaks the naming rules."""

    def __init__(self, kind: str, name: str, index: int, reason: str) -> None:
        caret = " " * index + "^"
        super().__init__(f"invalid {kind} name {name!r}: {reason}\n  {name}\n  {caret}")


class MessageError(PerceptError, ValueError):
    """A message's fields do not fit its type."""


class MalformedMessage(PerceptError):
    """Bytes that arrived on a socket could not be decoded into a message."""


class ParameterError(PerceptError, ValueError):
    """A parameter is unknown, or a value does not fit its declared type."""


class ServiceUnavailable(PerceptError):
    """No server is registered for a service, or the registry cannot be reached."""


class ServiceTimeout(PerceptError, TimeoutError):
    """A service server did not answer in time."""


class ServiceLost(PerceptError):
    """The server's connection ended while a call waited for its answer (it crashed or was killed): the
    request may or may not have been carried out. The next call looks the server up again."""


class ServiceError(PerceptError):
    """The service handler raised; the message is the server's error text."""


class LaunchError(PerceptError):
    """A launch file is invalid, or a node it names cannot be started."""


class RegistryUnavailable(PerceptError):
    """The registry did not answer: start one with `percept registry` or `percept launch`."""


class MissingExtra(PerceptError, ImportError):
    """A command needs an optional extra that is not installed; the message says how to install it."""
