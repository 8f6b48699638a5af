"""Interface discovery, glob selection and XDP state through rtnetlink."""

from __future__ import annotations

import json
import sys

import pytest
from pyroute2 import IPRoute

from fwc.loader.node import netlink
from fwc.loader.node.netlink import IFF_LOOPBACK, IFF_UP, Interface, matches, select_interfaces
from tests.loader_netns import sh, veth_pair


def iface(name: str, index: int, up: bool = True, loopback: bool = False) -> Interface:
    flags = (IFF_UP if up else 0) | (IFF_LOOPBACK if loopback else 0)
    return Interface(name, index, flags, None, 0, None)


@pytest.mark.parametrize(
    ("name", "include", "exclude", "expected"),
    [
        ("eth0", [], [], True),
        ("eth0", ["eth*"], [], True),
        ("ens3", ["eth*"], [], False),
        ("docker0", [], ["docker*"], False),
        ("eth0", ["eth*", "ens*"], ["eth0"], False),
        ("Eth0", ["eth*"], [], False),
    ],
)
def test_matches(name: str, include: list[str], exclude: list[str], expected: bool) -> None:
    assert matches(name, include, exclude) is expected


def test_selection_defaults_to_up_non_loopback() -> None:
    interfaces = [iface("lo", 1, loopback=True), iface("eth0", 2), iface("eth1", 3, up=False)]
    names = [i.name for i in select_interfaces(interfaces, [], [], require_up=True)]
    assert names == ["eth0"]
    assert [i.name for i in select_interfaces(interfaces, [], [], require_up=False)] == [
        "eth0",
        "eth1",
    ]
    # an explicit include selects matching interfaces whatever their state; loopback only
    # when it names it, never by a glob
    chosen = select_interfaces(interfaces, ["eth*", "l*"], [], require_up=True)
    assert [i.name for i in chosen] == ["eth0", "eth1"]
    chosen = select_interfaces(interfaces, ["eth*", "lo"], [], require_up=True)
    assert [i.name for i in chosen] == ["lo", "eth0", "eth1"]


LIST = (
    "import json; from fwc.loader.node.netlink import list_interfaces; "
    "print(json.dumps([[i.name, i.kind, i.up, i.loopback, i.xdp_mode] for i in list_interfaces()]))"
)


@pytest.mark.kernel
@pytest.mark.netns
def test_list_interfaces_in_a_namespace() -> None:
    with veth_pair(subnet=7) as pair:
        sh("ip", "-n", pair.ns_a, "link", "set", "dev", pair.if_a, "xdpgeneric", "off")
        out = sh(*pair.exec_a(sys.executable, "-c", LIST)).stdout
        got = {row[0]: row[1:] for row in json.loads(out)}
        assert got == {"lo": [None, True, True, None], pair.if_a: ["veth", True, False, None]}


def test_interface_list_agrees_with_pyroute2() -> None:
    with IPRoute() as ipr:
        theirs = sorted((netlink._interface(m) for m in ipr.get_links()), key=lambda i: i.index)
    assert netlink.list_interfaces() == theirs
