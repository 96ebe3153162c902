"""A private network on one address: three ``mldht node`` processes on 127.0.0.1."""

from __future__ import annotations

import json
import time

from .test_cli import mldht, running_node

HEX = "89abcdef0123456789abcdef0123456789abcdef"


def test_three_node_processes_on_one_address_form_a_network() -> None:
    """Nodes sharing 127.0.0.1 (ports differ) know each other; an announce made through
    one is found with get-peers through another. The first node has no routers at all
    (``--bootstrap none``) and says nothing about the public ones."""
    status = ("--status-interval", "0.3")
    with running_node("--bind", "127.0.0.1:0", "--bootstrap", "none", *status) as (a, _, a_addr):
        with (
            running_node("--bind", "127.0.0.1:0", "--bootstrap", a_addr, *status) as (b, _, b_addr),
            running_node("--bind", "127.0.0.1:0", "--bootstrap", a_addr, *status) as (c, _, c_addr),
        ):
            assert len({a_addr, b_addr, c_addr}) == 3
            assert all(addr.startswith("127.0.0.1:") for addr in (a_addr, b_addr, c_addr))
            for node in (a, b, c):  # each learns both others (one entry per ip:port)
                deadline = time.monotonic() + 15
                while node.event("status")["nodes"] < 2:
                    assert time.monotonic() < deadline, "routing table stuck below 2"

            common = ("--bind", "127.0.0.1:0", "--timeout", "10", "--json")
            out = mldht("announce", HEX, "--port", "6881", "--bootstrap", b_addr, *common)
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["accepted"] >= 2  # a, b and c all store it
            out = mldht("get-peers", HEX, "--bootstrap", c_addr, *common)
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["peers"] == ["127.0.0.1:6881"]
        code, err = a.stop()
        assert code == 0 and "Traceback" not in err, err
        assert "router" not in err.lower(), err  # no warning about the public routers
