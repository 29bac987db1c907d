"""Typed parameters: declaration, overrides, type checks, read-only, change callbacks and lookups."""

import re

import pytest

from perception.errors import ParameterError
from perception.runtime import params


@pytest.mark.parametrize(
    ("default", "overrides", "expected"),
    [
        (30, {}, 30),  # no override: the default
        (30, {"p": 15}, 15),  # override wins
        (0.5, {"p": 2}, 2.0),  # int widens to float
        (True, {"p": False}, False),
        ("rgb8", {"p": "mono8"}, "mono8"),
        ("0", {"p": 2}, "2"),  # `source:=2` is YAML's integer 2, meant as text where text is declared
        ([1, 2], {"p": (3, 4)}, [3, 4]),  # a tuple (e.g. from YAML or code) becomes a list
        ({"a": 1}, {"p": {"b": 2}}, {"b": 2}),  # dicts are replaced, not merged
        (30, {"other": 1}, 30),  # overrides of other names do not leak
    ],
)
def test_declare_returns_default_or_override(default, overrides, expected):
    p = params.Parameters("cam", overrides)
    value = p.declare("p", default, "what p does")
    assert value == expected and type(value) is type(expected)
    assert p.get("p") == expected


@pytest.mark.parametrize(
    ("default", "value", "expected", "found"),
    [
        (30, True, "int", "bool True"),  # bool is an int subclass but not accepted as one
        (0.5, False, "float", "bool False"),  # nor widened to float
        (30, 2.0, "int", "float 2.0"),  # floats never narrow to int
        (True, 1, "bool", "int 1"),  # 1 is not True
        ("x", 2.5, "str", "float 2.5"),  # no str() of anything but integers
        ([1], {"a": 1}, "list", "dict {'a': 1}"),
    ],
)
def test_wrong_type_names_parameter_expected_and_found(default, value, expected, found):
    p = params.Parameters("cam", {"fps": value})
    with pytest.raises(ParameterError, match=f"parameter 'cam.fps': expected {expected}, found {found}"):
        p.declare("fps", default)  # from an override
    q = params.Parameters("cam")
    q.declare("fps", default)
    with pytest.raises(ParameterError, match=f"parameter 'cam.fps': expected {expected}, found {found}"):
        q.set("fps", value)  # at run time
    assert q.get("fps") == default


def test_declare_rejects_unsupported_default_and_redeclaration():
    p = params.Parameters("cam")
    with pytest.raises(ParameterError, match=r"'roi': default must be one of bool, int, .*found tuple"):
        p.declare("roi", (0, 0))
    p.declare("fps", 30)
    with pytest.raises(ParameterError, match="parameter 'fps' of cam is already declared"):
        p.declare("fps", 60)
    assert p.get("fps") == 30


def test_set_returns_coerced_value():
    p = params.Parameters("cam")
    p.declare("gain", 1.0)
    assert p.set("gain", 3) == 3.0 and type(p.get("gain")) is float


def test_set_on_read_only_raises():
    p = params.Parameters("cam")
    p.declare("device", "/dev/video0", read_only=True)
    with pytest.raises(ParameterError, match="parameter 'device' of cam is read-only"):
        p.set("device", "/dev/video1")
    assert p.get("device") == "/dev/video0"


def test_on_change_sees_new_value_and_a_raising_callback_rolls_back():
    p = params.Parameters("cam")
    p.declare("fps", 30)
    seen = []
    p.on_change(lambda name, value: seen.append((name, value, p.get(name))))
    p.set("fps", 15)
    assert seen == [("fps", 15, 15)]  # called after the value changed

    def reject_fast(name, value):
        if value > 60:
            raise ValueError(f"{name}: at most 60, found {value}")

    p.on_change(reject_fast)
    with pytest.raises(ValueError, match="fps: at most 60, found 120"):
        p.set("fps", 120)
    assert p.get("fps") == 15  # rolled back
    p.set("fps", 60)
    assert p.get("fps") == 60


@pytest.mark.parametrize(
    ("declared", "match"),
    [
        (["fps", "gain"], r"cam has no parameter 'fsp' \(declared: fps, gain\)"),  # lists names for typos
        ([], r"cam has no parameter 'fsp' \(declared: none\)"),
    ],
)
def test_unknown_parameter_lists_declared_names(declared, match):
    p = params.Parameters("cam")
    for name in declared:
        p.declare(name, 1)
    for call in (lambda: p.get("fsp"), lambda: p.set("fsp", 1), lambda: p.describe(["fsp"])):
        with pytest.raises(ParameterError, match=match):
            call()


def test_unused_overrides_lists_overrides_never_declared():
    p = params.Parameters("cam", {"fps": 15, "gian": 2.0, "debug": True})
    p.declare("fps", 30)
    p.declare("gain", 1.0)
    assert p.unused_overrides() == ["debug", "gian"]  # sorted; catches misspelt launch-file keys


def test_describe():
    p = params.Parameters("cam", {"fps": 15})
    p.declare("fps", 30, "frames per second")
    p.declare("device", "/dev/video0", read_only=True)
    assert list(p.describe()) == ["fps", "device"] == p.names()  # all, in declaration order
    assert p.describe([]) == p.describe()  # empty means all, like GetParameters
    assert p.describe(["fps"]) == {"fps": params.Parameter("fps", 15, int, "frames per second", False)}
    assert p.describe(["device"])["device"].read_only is True
    assert [params.type_name(x.type) for x in p.describe().values()] == ["int", "str"]


def test_a_range_is_enforced_on_the_default_the_override_and_at_run_time():
    p = params.Parameters("cam", {"fps": 1e308})
    with pytest.raises(ParameterError, match=r"parameter 'cam.fps': expected 0.1 to 240, found 1e\+308"):
        p.declare("fps", 30.0, "frames per second", range=(0.1, 240.0))
    q = params.Parameters("cam")
    assert q.declare("fps", 30.0, "frames per second", range=(0.1, 240.0)) == 30.0
    for hostile in (1e308, 0.0, -5, float("inf")):
        with pytest.raises(ParameterError, match=r"parameter 'cam\.fps': expected 0\.1 to 240, found"):
            q.set("fps", hostile)
    with pytest.raises(ParameterError, match=r"parameter 'cam\.fps': expected a number, found nan"):
        q.set("fps", float("nan"))
    assert q.get("fps") == 30.0 and q.set("fps", 240) == 240.0  # both ends included
    assert q.describe(["fps"])["fps"].explained() == "frames per second (0.1 to 240)"
    with pytest.raises(ParameterError, match="expected 1 to 8, found 9"):
        params.Parameters("cam").declare("step", 9, range=(1, 8))  # a default outside is a bug
    with pytest.raises(ParameterError, match="a range bounds a number, found str"):
        params.Parameters("cam").declare("label", "x", range=(1, 8))


@pytest.mark.parametrize(
    ("default", "value", "expected"),
    [
        ([1.0, 2.0], [1, 2.5], [1.0, 2.5]),  # ints widen to float in a list of floats, as alone
        ([640, 480], [320, 240], [320, 240]),
        (["car"], ["car", "person"], ["car", "person"]),
        ([1, 2.5], [3, 4], [3.0, 4.0]),  # ints and floats mixed: a list of floats
        ([], ["anything", 1], ["anything", 1]),  # an empty default types nothing
        ([[0, 1], [2, 3]], [["a"]], [["a"]]),  # nor a list of lists
    ],
)
def test_a_list_takes_items_of_its_defaults_type(default, value, expected):
    p = params.Parameters("cam", {"p": value})
    assert p.declare("p", default) == expected
    q = params.Parameters("cam")
    q.declare("p", default)
    assert q.set("p", value) == expected


@pytest.mark.parametrize(
    ("default", "value", "found"),
    [
        ([1.0, 2.0], ["a", "b"], "a list of float, found str 'a' at index 0"),
        ([640, 480], [320, 240.5], "a list of int, found float 240.5 at index 1"),
        (["car"], ["car", None], "a list of str, found NoneType None at index 1"),
        ([True], [1], "a list of bool, found int 1 at index 0"),
    ],
)
def test_a_list_refuses_an_item_of_another_type_naming_it(default, value, found):
    p = params.Parameters("cam", {"p": value})
    with pytest.raises(ParameterError, match=re.escape(f"parameter 'cam.p': expected {found}")):
        p.declare("p", default)  # at start
    q = params.Parameters("cam")
    q.declare("p", default)
    with pytest.raises(ParameterError, match=re.escape(f"parameter 'cam.p': expected {found}")):
        q.set("p", value)  # and live
    assert q.get("p") == default


def test_set_many_sets_all_or_none():
    p = params.Parameters("cam")
    p.declare("gain", 1.0, range=(0.0, 10.0))
    p.declare("mode", "fast")
    p.declare("fps", 30)
    seen = []

    def refuse_slow(name, value):
        seen.append((name, value))
        if value == "slow":
            raise ValueError("mode slow is not supported")

    p.on_change(refuse_slow)
    with pytest.raises(ParameterError, match=r"expected 0 to 10, found 20\.0"):
        p.set_many({"fps": 15, "gain": 20.0})
    with pytest.raises(ParameterError, match="has no parameter 'gian'"):
        p.set_many({"fps": 15, "gian": 2.0})
    assert seen == []  # refused before anything was set: no callback told of a change
    with pytest.raises(ValueError, match="mode slow is not supported"):
        p.set_many({"gain": 2.0, "fps": 15, "mode": "slow"})
    assert (p.get("gain"), p.get("fps"), p.get("mode")) == (1.0, 30, "fast")  # the two before put back
    # The callback heard each change and each change undone, so a value it caches is the node's again.
    assert seen == [("gain", 2.0), ("fps", 15), ("mode", "slow"), ("fps", 30), ("gain", 1.0)]
    p.set_many({"gain": 2.0, "fps": 15})
    assert (p.get("gain"), p.get("fps")) == (2.0, 15)
    # A callback that refuses a value it held before, while it is put back: said, not hidden.
    stubborn = params.Parameters("cam")
    stubborn.declare("gain", 1.0)
    stubborn.declare("mode", "fast")
    refused: list[object] = [5.0]

    def refuse(name, value):
        if value in refused or value == "slow":
            raise ValueError(f"{value} refused")

    stubborn.on_change(refuse)
    stubborn.set("gain", 2.0)
    refused.append(2.0)  # from now on 2.0, the value to put back, is refused too
    with pytest.raises(ParameterError, match=r"slow refused; and gain could not be put back"):
        stubborn.set_many({"gain": 3.0, "mode": "slow"})


def test_a_later_files_wildcard_leaves_an_earlier_files_own_name_checked():
    own = params.FileValues({"gain": 1.0})  # a node's own section: a typo there is warned about
    wildcard = params.FileValues({"gain": 2.0, "use_sim_time": True})
    wildcard.shared = frozenset(wildcard)
    merged = own.then(wildcard)
    assert merged == {"gain": 2.0, "use_sim_time": True} and merged.shared == {"use_sim_time"}
    assert wildcard.then({"use_sim_time": False}).shared == {"gain"}  # given by a map: the node's own


def test_a_wildcard_sections_names_are_no_typos_where_a_node_does_not_declare_them(tmp_path, caplog):
    """One parameter file for a whole graph, as ROS 2 users write it: `/**` gives every node
    use_sim_time, which only some declare. Every other node warned about it as an override matching
    nothing; a name in the node's own section, or one given with -p, that it does not declare is still a
    typo and said."""
    import logging

    from perception import Node
    from perception.runtime.context import Context, NodeOverrides
    from perception.runtime.harness import HarnessContext

    class Gain(Node):
        def __init__(self) -> None:
            super().__init__("gain")
            self.declare_parameter("gain", 1.0, "how much")

    params = tmp_path / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters: {use_sim_time: true, gain: 3.0}\ngain:\n  ros__parameters: {gian: 2.0}\n"
    )
    previous = Context._default
    Context.set_default(HarnessContext(NodeOverrides(parameter_files=[params], parameters={"colour": "red"})))
    try:
        node = Gain()
    finally:
        Context.set_default(previous)
    with caplog.at_level(logging.WARNING):
        node.spin_once(0)
    assert node.get_parameter("gain") == 3.0
    warned = [r.getMessage().split(" matches")[0] for r in caplog.records]
    assert warned == ["parameter override 'colour'", "parameter override 'gian'"]
