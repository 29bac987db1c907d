"""Name rules: resolution of absolute, relative and private names, remappings, and pointed errors."""

import re

import pytest

from perception.errors import InvalidNameError
from perception.runtime import names


@pytest.mark.parametrize(
    ("name", "namespace", "expected"),
    [
        ("/camera/image", "/robot", "/camera/image"),  # absolute ignores the namespace
        ("image", "/robot", "/robot/image"),  # relative goes under the namespace
        ("image", "", "/image"),  # '' is the root namespace
        ("image", "/", "/image"),  # so is '/', without a doubled slash
        ("left/image", "/robot/head", "/robot/head/left/image"),  # nested on both sides
        ("image", "robot/", "/robot/image"),  # namespace normalised: made absolute, trailing '/' dropped
        ("~/stats", "/robot", "/robot/cam/stats"),  # private: under the node's own name
        ("~/stats", "/", "/cam/stats"),
        ("~", "/robot", "/robot/cam"),  # the node itself
        ("~", "", "/cam"),
    ],
)
def test_resolve(name, namespace, expected):
    assert names.resolve(name, namespace=namespace, node_name="cam") == expected


@pytest.mark.parametrize(
    ("name", "remappings", "expected"),
    [
        ("image", {"image": "/sim/rgb"}, "/sim/rgb"),  # relative source, absolute target
        ("/robot/image", {"image": "/sim/rgb"}, "/sim/rgb"),  # source matched after resolution
        ("image", {"/robot/image": "rgb"}, "/robot/rgb"),  # absolute source, relative target in ns
        ("~/stats", {"~/stats": "/stats"}, "/stats"),  # private source
        ("depth", {"image": "/sim/rgb"}, "/robot/depth"),  # unmatched: unchanged
        ("image", {"/image": "/sim/rgb"}, "/robot/image"),  # '/image' is not '/robot/image'
        ("a", {"a": "b", "b": "c"}, "/robot/b"),  # remappings do not chain
    ],
)
def test_resolve_remappings(name, remappings, expected):
    assert names.resolve(name, namespace="/robot", node_name="cam", remappings=remappings) == expected


def caret_column(message):
    """Column of '^' in the caret line, relative to the echoed name on the line above."""
    *_, echoed, caret = message.split("\n")
    assert echoed.startswith("  ") and caret.startswith("  ")
    return caret.index("^") - 2


@pytest.mark.parametrize(
    ("name", "reason", "column"),
    [
        ("/a//b", r"empty segment \('//'\)", 3),  # points at the second slash
        ("//a", "empty segment", 1),  # right after the root slash
        ("/a/", "must not end with '/'", 2),  # the trailing slash
        ("/a/1b", "must not start with a digit", 3),  # the digit
        ("/a/b-c", "letters, digits and '_'", 4),  # the '-', not the segment start
        ("/a b", "letters, digits and '_'", 2),  # the space
        ("/cam/é", "letters, digits and '_'", 5),  # ASCII only
        ("a/b", r"must be absolute \(start with '/'\)", 0),  # relative
    ],
)
def test_validate_errors_point_at_the_fault(name, reason, column):
    pattern = f"invalid service name {re.escape(repr(name))}: .*{reason}"
    with pytest.raises(InvalidNameError, match=pattern) as info:
        names.validate(name, kind="service")
    message = str(info.value)
    assert message.split("\n")[1] == "  " + name  # the name is echoed as-is
    assert caret_column(message) == column


@pytest.mark.parametrize("name", ["/", "/a", "/_x/B2/c_3", "/robot/cam/image_raw"])
def test_validate_accepts_valid_names(name):
    assert names.validate(name) == name


@pytest.mark.parametrize(
    ("name", "namespace", "match", "column"),
    [
        ("", "/robot", "invalid topic name '': must not be empty", 0),
        ("1image", "/robot", r"'/robot/1image'", 7),  # reported on the resolved name
        ("~x", "/robot", r"'/robot/~x'", 7),  # '~' only as '~' or '~/...'
        ("image", "/ro-bot", r"invalid namespace name '/ro-bot'", 3),  # the namespace is checked too
    ],
)
def test_resolve_errors(name, namespace, match, column):
    with pytest.raises(InvalidNameError, match=match) as info:
        names.resolve(name, namespace=namespace, node_name="cam")
    assert caret_column(str(info.value)) == column


def test_invalid_name_error_is_a_value_error():
    with pytest.raises(ValueError, match="must be absolute"):
        names.validate("relative")
