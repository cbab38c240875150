"""A small internet in network namespaces: a public segment, a NAT router, a home LAN.

    root ns ── bn-obs 198.51.100.100 ─┐
                                      │  bn-pub: bridge br0 holding the public nodes
                                      │          198.51.100.2, 198.51.100.3
    bn-rtr: wan 198.51.100.1 ─────────┘
            lan 192.168.77.1 ── bn-home: 192.168.77.2 (gateway), .3, .4

The router masquerades the home LAN, forwards the netPort and recpPort of
one home node (the gateway) and hairpins LAN traffic sent to its public
address, like a typical home router. Everything is torn down on exit, even
when the test fails.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

PUB, RTR, HOME = "bn-pub", "bn-rtr", "bn-home"
PUBLIC_NET, HOME_NET = "198.51.100", "192.168.77"
ROUTER_PUBLIC = f"{PUBLIC_NET}.1"
OBSERVER = f"{PUBLIC_NET}.100"


def sh(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


def teardown() -> None:
    for ns in (PUB, RTR, HOME):
        sh("ip", "netns", "delete", ns, check=False)
    sh("ip", "link", "delete", "bn-obs", check=False)


NFT_RULES = f"""
table ip nat {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr {ROUTER_PUBLIC} tcp dport {{ 13360, 13361 }} dnat to {HOME_NET}.2
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade
    ip saddr {HOME_NET}.0/24 ip daddr {HOME_NET}.2 ct status dnat masquerade
  }}
}}
"""


@contextmanager
def small_internet(public_nodes: int = 2, home_nodes: int = 3) -> Iterator[dict[str, list[str]]]:
    teardown()  # a previous crash may have left pieces behind
    try:
        for ns in (PUB, RTR, HOME):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        # public segment: a bridge in bn-pub
        sh("ip", "link", "add", "br0", "type", "bridge", ns=PUB)
        sh("ip", "link", "set", "br0", "up", ns=PUB)
        public = [f"{PUBLIC_NET}.{2 + i}" for i in range(public_nodes)]
        for ip in public:
            sh("ip", "addr", "add", f"{ip}/24", "dev", "br0", ns=PUB)
        # the observer (this test process) on the public segment
        sh("ip", "link", "add", "bn-obs", "type", "veth", "peer", "name", "obs", "netns", PUB)
        sh("ip", "addr", "add", f"{OBSERVER}/24", "dev", "bn-obs")
        sh("ip", "link", "set", "bn-obs", "up")
        sh("ip", "link", "set", "obs", "master", "br0", "up", ns=PUB)
        # router: wan on the public bridge, lan to the home namespace
        sh("ip", "link", "add", "wan", "netns", RTR, "type", "veth", "peer", "name", "rtr", "netns", PUB)
        sh("ip", "link", "set", "rtr", "master", "br0", "up", ns=PUB)
        sh("ip", "addr", "add", f"{ROUTER_PUBLIC}/24", "dev", "wan", ns=RTR)
        sh("ip", "link", "set", "wan", "up", ns=RTR)
        sh("ip", "link", "add", "lan", "netns", RTR, "type", "veth", "peer", "name", "eth0", "netns", HOME)
        sh("ip", "addr", "add", f"{HOME_NET}.1/24", "dev", "lan", ns=RTR)
        sh("ip", "link", "set", "lan", "up", ns=RTR)
        sh("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", ns=RTR)
        subprocess.run(
            ["ip", "netns", "exec", RTR, "nft", "-f", "-"], input=NFT_RULES, text=True, check=True, capture_output=True
        )
        home = [f"{HOME_NET}.{2 + i}" for i in range(home_nodes)]
        for ip in home:
            sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0", ns=HOME)
        sh("ip", "link", "set", "eth0", "up", ns=HOME)
        sh("ip", "route", "add", "default", "via", f"{HOME_NET}.1", ns=HOME)
        yield {"public": public, "home": home}
    finally:
        teardown()
