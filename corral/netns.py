"""Test hosts in network namespaces, so that a partition is a real network partition.

Each scheduler of a local cluster can run in its own namespace, joined to the host by a
veth pair on a bridge; etcd and Redis listen on the bridge's address too. Taking a veth
down cuts that scheduler off from etcd and Redis (and nothing else). Needs root and
iproute2; everything made here is removed by `remove()`.
"""

from __future__ import annotations

import random
import secrets
import subprocess
from dataclasses import dataclass, field


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


def available() -> bool:
    probe = f"crl-probe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except (OSError, subprocess.SubprocessError):
        return False
    _ip("netns", "del", probe, check=False)
    return True


@dataclass
class TestNet:
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: int = field(default_factory=lambda: random.randint(1, 250))
    hosts: dict[str, int] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"crlb{self.tag}"

    @property
    def gateway(self) -> str:
        """The host's address on the bridge: where namespaced processes find etcd and Redis."""
        return f"10.213.{self.subnet}.1"

    def namespace(self, host: str) -> str:
        return f"crl-{self.tag}-{host}"

    def _veth(self, host: str) -> str:
        return f"crl{self.tag}h{self.hosts[host]}"

    def create(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, host: str) -> list[str]:
        """Create the namespace for `host`; returns the command prefix that runs inside it."""
        if host in self.hosts:
            return ["ip", "netns", "exec", self.namespace(host)]
        self.hosts[host] = len(self.hosts) + 1
        ns, outer, inner = self.namespace(host), self._veth(host), f"crl{self.tag}n{self.hosts[host]}"
        _ip("netns", "add", ns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        address = f"10.213.{self.subnet}.{10 + self.hosts[host]}/24"
        _ip("-n", ns, "addr", "add", address, "dev", inner)
        _ip("-n", ns, "link", "set", inner, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return ["ip", "netns", "exec", ns]

    def partition(self, host: str) -> None:
        _ip("link", "set", self._veth(host), "down")

    def heal(self, host: str) -> None:
        _ip("link", "set", self._veth(host), "up")

    def remove(self) -> None:
        for host in list(self.hosts):
            _ip("netns", "del", self.namespace(host), check=False)
        _ip("link", "del", self.bridge, check=False)
        self.hosts.clear()
