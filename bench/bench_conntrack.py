"""Macro benchmark of connection state: one host policy (loopback, replies first, invalid ICMP
errors dropped, new SSH from a management net, new HTTP(S), deny by default) as fwc's XDP
program with its conntrack table, as iptables-legacy (`-m conntrack` in filter INPUT) and as
nftables (`ct state` in an inet input chain), on the veth harness of bench/macro_veth.py.

The receiving namespace owns the servers' address and holds real conntrack entries
(`conntrack -I`) for the established flows, so their packets are established for all three
filters. Every packet that passes the filter ends in a sink (inet input, priority 100: counts
and drops, so the stack sends no resets that would close the entries). Traffic classes are
timed separately and as a server mix; every filter first gives the reference evaluator's
verdict, with the state each frame has, on every test frame.

Run as root: `python bench/bench_conntrack.py` (needs scripts/bench-setup.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import live  # noqa: E402
from macro_veth import (  # noqa: E402
    Measurement,
    measure,
    trafgen_config,
    xdp_attached,
)
from netfilter import observer, passed_frames  # noqa: E402
from netns import RX_DEV, Pair, sh, veth_pair  # noqa: E402

from fwc.compiler.oracle.evaluate import XDP_PASS, evaluate  # noqa: E402
from fwc.compiler.oracle.frames import build_frame, fields_from_mapping  # noqa: E402
from fwc.compiler.policy.ir import Policy  # noqa: E402

NAME = "ctbench"
SERVER = "10.0.0.2"
MGMT = "10.20.0.0/16"
FILTERS = ("none", "xdp-pass", "fwc", "iptables", "nftables")

POLICY_YAML = f"""\
version: 1
name: {NAME}
default_action: deny
rules:
  - name: allow_loopback
    priority: 1
    action: allow
    interfaces: ["lo"]
  - name: allow_replies
    priority: 2
    action: allow
    state: [established, related]
  - name: drop_invalid
    priority: 3
    action: deny
    protocol: icmp
    state: [invalid]
  - name: drop_invalid_v6
    priority: 3
    action: deny
    protocol: icmpv6
    state: [invalid]
  - name: allow_ssh_admin
    priority: 10
    action: allow
    protocol: tcp
    source_cidrs: ["{MGMT}", "fd00:20::/48"]
    destination_ports: [22]
    state: [new]
  - name: allow_web
    priority: 20
    action: allow
    protocol: tcp
    destination_ports: [80, 443]
    state: [new]
"""


def iptables_text() -> str:
    """The policy for iptables-legacy-restore (IPv4; the frames are IPv4)."""
    return (
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A INPUT -i lo -j ACCEPT\n"
        "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        "-A INPUT -p icmp -m conntrack --ctstate INVALID -j DROP\n"
        f"-A INPUT -s {MGMT} -p tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT\n"
        "-A INPUT -p tcp -m multiport --dports 80,443 -m conntrack --ctstate NEW -j ACCEPT\n"
        "COMMIT\n"
    )


IPTABLES_EMPTY = (
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
)


def nft_text() -> str:
    return (
        "table inet fwc_ctbench {\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority 0; policy drop;\n"
        '\t\tiifname "lo" accept\n'
        "\t\tct state established,related accept\n"
        "\t\tmeta l4proto { icmp, ipv6-icmp } ct state invalid drop\n"
        f"\t\tip saddr {MGMT} tcp dport 22 ct state new accept\n"
        "\t\tip6 saddr fd00:20::/48 tcp dport 22 ct state new accept\n"
        "\t\ttcp dport { 80, 443 } ct state new accept\n"
        "\t}\n}\n"
    )


def ct_table_text() -> str:
    from fwc.loader.node.cttable import ruleset

    return ruleset(NAME)


# Every frame that passes the filter ends here (counted, then dropped so the stack sends no
# resets that would close the entries); the observer of bench/netfilter.py around it.
SINK = observer(
    f'type filter hook input priority 100; policy accept;\n\t\tiifname "{RX_DEV}" '
    "counter name passed drop"
)


# ---- frames and their states --------------------------------------------------------


def _frame(**fields: object) -> bytes:
    return build_frame(fields_from_mapping({"dst": SERVER, **fields}))


def established_flows(n: int) -> list[dict[str, object]]:
    """Client flows to the server's HTTPS (TCP) and QUIC (UDP) port."""
    out: list[dict[str, object]] = []
    for i in range(n):
        client = str(ipaddress.IPv4Address("203.0.113.0") + 1 + i % 200)
        proto = "udp" if i % 2 else "tcp"
        out.append({"proto": proto, "src": client, "sport": 40000 + i, "dport": 443})
    return out


def classes(n_flows: int) -> dict[str, list[tuple[bytes, str]]]:
    """Per traffic class: (frame, the state conntrack gives it)."""
    flows = established_flows(n_flows)
    est = [
        (_frame(**f, flags="ACK") if f["proto"] == "tcp" else _frame(**f), "established")
        for f in flows
    ]
    syn = [
        (_frame(src=f"198.51.100.{1 + i % 250}", sport=50000 + i, dport=port), "new")
        for i, port in enumerate([23, 3306, 5432, 8080, 25, 22] * 11)
    ]
    junk: list[tuple[bytes, str]] = []
    for i in range(16):
        src = f"192.0.2.{1 + i}"
        junk.append((_frame(proto="udp", src=src, sport=1024 + i, dport=9000 + i), "new"))
        junk.append((_frame(src=src, sport=2048 + i, dport=80 + i % 2, flags="ACK"), "new"))
        junk.append(
            (
                _frame(
                    proto="icmp",
                    src=src,
                    icmp_type=3,
                    icmp_code=3,
                    inner={"proto": "udp", "sport": 53, "dport": 30000 + i},
                ),
                "invalid",
            )
        )
        junk.append((_frame(proto="icmp", src=src, icmp_type=8), "new"))
    return {"established": est, "closed-syn": syn, "junk": junk}


def server_mix(cls: dict[str, list[tuple[bytes, str]]], size: int) -> list[tuple[bytes, str]]:
    """90 % established, 5 % closed-port SYNs, 5 % junk, interleaved."""
    n_other = size // 20
    out = []
    for i in range(size - 2 * n_other):
        out.append(cls["established"][i % len(cls["established"])])
    for i in range(n_other):
        out.insert(i * 20 + 5, cls["closed-syn"][i % len(cls["closed-syn"])])
        out.insert(i * 20 + 15, cls["junk"][i % len(cls["junk"])])
    return out


def checked_frames(n_flows: int) -> list[tuple[bytes, str]]:
    """Everything timed, plus the passing classes no mix times (a related ICMP error, new SSH
    from the management net, a new HTTPS connection)."""
    flow = established_flows(1)[0]
    extra = [
        (
            _frame(
                proto="icmp",
                src=str(flow["src"]),
                icmp_type=3,
                icmp_code=4,
                inner={"proto": "tcp", "sport": 443, "dport": flow["sport"]},
            ),
            "related",
        ),
        (_frame(src="10.20.1.1", sport=51000, dport=22), "new"),
        (_frame(src="198.18.0.1", sport=51001, dport=443), "new"),
    ]
    all_frames = [x for c in classes(n_flows).values() for x in c] + extra
    return list(dict.fromkeys(all_frames))


def load_policy() -> Policy:
    from policies import load_policy as load

    return load(POLICY_YAML, f"{NAME}.yaml")


def want_pass(policy: Policy, frames: Sequence[tuple[bytes, str]]) -> list[bool]:
    return [evaluate(policy, f, ct_state=s).xdp_action == XDP_PASS for f, s in frames]


# ---- the receiver -------------------------------------------------------------------


def prepare(pair: Pair, n_flows: int) -> None:
    """The server's address, no reverse-path filter, checksums unchecked (the frames carry
    none), the sink, and an established conntrack entry per flow."""
    rx = pair.rx
    sh("ip", "-n", rx, "addr", "add", f"{SERVER}/32", "dev", RX_DEV)
    for key in ("net.ipv4.conf.all.rp_filter=0", f"net.ipv4.conf.{RX_DEV}.rp_filter=0"):
        sh("ip", "netns", "exec", rx, "sysctl", "-qw", key)
    pair.rx_sh("nft", "-f", "-", input=SINK)
    # Conntrack's sysctls exist once its hooks are registered: the table makes sure.
    pair.rx_sh("nft", "-f", "-", input=ct_table_text())
    pair.rx_sh("sysctl", "-qw", "net.netfilter.nf_conntrack_checksum=0")
    pair.rx_sh("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_be_liberal=1")
    # A packet of a UDP flow that has seen a reply sets the entry's timeout to the stream
    # timeout (120 s by default), whatever `conntrack -I --timeout` said: a run is longer.
    pair.rx_sh("sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout_stream=3600")
    for f in established_flows(n_flows):
        cmd = ["conntrack", "-I", "-p", str(f["proto"]), "-s", str(f["src"]), "-d", SERVER]
        cmd += ["--sport", str(f["sport"]), "--dport", str(f["dport"]), "--timeout", "3600"]
        if f["proto"] == "tcp":
            cmd += ["--state", "ESTABLISHED"]
        cmd += ["-u", "SEEN_REPLY,ASSURED"]
        pair.rx_sh(*cmd)
    pair.rx_sh("nft", "delete", "table", "inet", f"fwc_ct_{NAME}")


@contextlib.contextmanager
def loaded(pair: Pair, name: str, work: Path) -> Iterator[None]:
    """Filter `name` in the receiver; none, xdp-pass and fwc keep conntrack on with fw-load's
    table."""
    if name in ("none", "xdp-pass", "fwc"):
        pair.rx_sh("nft", "-f", "-", input=ct_table_text())
        try:
            if name == "fwc":
                with xdp_attached(pair, "fwc", work / "fw.o", work):
                    yield
            elif name == "xdp-pass":
                # On veth, any XDP program makes the receiver copy each frame before it runs:
                # this one only passes, so fwc's own cost is its difference from it.
                with xdp_attached(pair, "live_pass", live.build(work), work):
                    yield
            else:
                yield
        finally:
            pair.rx_sh("nft", "delete", "table", "inet", f"fwc_ct_{NAME}", check=False)
    elif name == "iptables":
        pair.rx_sh("iptables-legacy-restore", input=iptables_text())
        try:
            yield
        finally:
            pair.rx_sh("iptables-legacy-restore", input=IPTABLES_EMPTY, check=False)
    elif name == "nftables":
        pair.rx_sh("nft", "-f", "-", input=nft_text())
        try:
            yield
        finally:
            pair.rx_sh("nft", "delete", "table", "inet", "fwc_ctbench", check=False)
    else:
        raise RuntimeError(f"unknown filter {name!r}")


def verify(pair: Pair, policy: Policy, work: Path, filters: Sequence[str], n_flows: int) -> int:
    """Every filter but none gives the evaluator's verdict on every checked frame."""
    frames = checked_frames(n_flows)
    want = want_pass(policy, frames)
    for name in filters:
        if name in ("none", "xdp-pass"):
            continue
        with loaded(pair, name, work):
            got = passed_frames(pair, [f for f, _ in frames], SINK)
        bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
        if bad:
            f, s = frames[bad[0]]
            raise RuntimeError(
                f"{name} differs from the reference evaluator on {len(bad)} frames "
                f"(first: state {s}, {'drop' if want[bad[0]] else 'pass'} where the evaluator "
                f"says otherwise, {f.hex()}); not timed"
            )
    return len(frames)


def compile_fwc(policy: Policy, out: Path) -> str:
    from fwc.compiler.backend.build import compile_policy

    return compile_policy(policy, output=out, strategy="auto", cache_dir=None).plan.strategy


# ---- main ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except RuntimeError as exc:
        print(f"bench_conntrack: {exc}", file=sys.stderr)
        return 2


def _main(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flows", type=int, default=64, help="established flows")
    ap.add_argument("--filters", default=",".join(FILTERS))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_conntrack: needs root (namespaces, XDP, netfilter)", file=sys.stderr)
        return 2
    filters = args.filters.split(",")
    policy = load_policy()
    cls = classes(args.flows)
    mixes = {name: [f for f, _ in c] for name, c in cls.items()}
    mixes["server-mix"] = [f for f, _ in server_mix(cls, 200)]
    runs: dict[tuple[str, str], list[Measurement]] = {}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fwc-ctbench-") as tmp, veth_pair() as pair:
        work = Path(tmp)
        strategy = compile_fwc(policy, work / "fw.o")
        prepare(pair, args.flows)
        n = verify(pair, policy, work, filters, args.flows)
        checked = ", ".join(f for f in filters if f not in ("none", "xdp-pass"))
        print(f"{n} frames: {checked} agree with the reference evaluator")
        for name, frames in mixes.items():
            (work / f"{name}.cfg").write_text(trafgen_config(frames))
        print(
            f"fwc strategy {strategy}, {args.seconds:g} s per cell, {args.rounds} rounds, "
            f"{args.flows} established flows, {os.cpu_count()} CPUs"
        )
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for flt in filters:
                with loaded(pair, flt, work):
                    for name in mixes:
                        counter = "xdp" if flt in ("fwc", "xdp-pass") else "none"
                        m = measure(pair, work / f"{name}.cfg", args.seconds, counter)
                        runs.setdefault((flt, name), []).append(m)
        loads.append(os.getloadavg()[0])
        # The established entries must have lasted the whole run: check every filter again.
        verify(pair, policy, work, filters, args.flows)
        print(f"after the rounds, {checked} again agree with the reference evaluator")
    _report(runs, filters, list(mixes), loads)
    return 0


def _report(
    runs: dict[tuple[str, str], list[Measurement]],
    filters: Sequence[str],
    mixes: Sequence[str],
    loads: Sequence[float],
) -> None:
    def med(key: tuple[str, str]) -> float:
        return statistics.median(m.processed_pps for m in runs[key])

    print()
    print(f"{'class':<12} {'filter':<9} {'pps median':>11} {'[min-max]':>21} {'fwc / peer':>10}")
    for name in mixes:
        for flt in filters:
            values = [m.processed_pps for m in runs[flt, name]]
            ratio = "-"
            if flt != "fwc" and ("fwc", name) in runs:
                ratio = f"{med(('fwc', name)) / med((flt, name)):.2f}"
            print(
                f"{name:<12} {flt:<9} {statistics.median(values):>11,.0f} "
                f"[{min(values):>9,.0f}-{max(values):>9,.0f}] {ratio:>10}"
            )
    print(f"load average (1 min) over the rounds: {min(loads):.2f}-{max(loads):.2f}")


if __name__ == "__main__":
    sys.exit(main())
