"""Delivery through real MX lookups: dnsmasq on a loopback port answers for
*.test, the daemon's [dns] servers points at it, and mail goes to the MX
hosts it names on port 25 of loopback addresses (needs root for port 25).
NXDOMAIN and null MX (RFC 7505) bounce at once; implicit MX delivers."""
import os
import pwd
import shutil
import socket
import subprocess
import time
import unittest

import harness


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("dnsmasq"), "needs root (port 25) and dnsmasq")
class MxDeliveryTest(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon()
        self.dns_port = free_udp_port()
        user = pwd.getpwuid(os.getuid()).pw_name
        self.dnsmasq = subprocess.Popen([
            "dnsmasq", "--keep-in-foreground", f"--port={self.dns_port}", "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", f"--user={user}",
            f"--pid-file={self.d.root}/dnsmasq.pid", f"--log-facility={self.d.root}/dnsmasq.log",
            "--local=/test/", "--local-ttl=60",
            "--mx-host=shop.test,mx1.shop.test,10", "--mx-host=shop.test,mx2.shop.test,20",
            "--host-record=mx1.shop.test,127.0.0.2", "--host-record=mx2.shop.test,127.0.0.3",
            "--host-record=implicit.test,127.0.0.3",
            "--mx-host=nullmx.test,.,0",
        ], stderr=subprocess.DEVNULL)
        # The preferred MX is dead (nothing listens on 127.0.0.2:25 but a closed
        # port); the second one is a sink.
        self.mx2 = subprocess.Popen([harness.BIN, "sink", "--listen", "127.0.0.3:25", "--jsonl",
                                     f"{self.d.root}/mx2.jsonl"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.mx2.stdout.readline().decode()
        if "ready" not in line:
            self.skipTest(f"cannot listen on 127.0.0.3:25: {line!r}")
        extra = f"""
[delivery]
idle_timeout = "1s"
connect_timeout = "2s"

[retry]
initial = "1s"
max = "2s"

[dns]
servers = ["127.0.0.1:{self.dns_port}"]
"""
        with open(self.d.config_path, "w") as f:
            f.write(harness.default_config(self.d.root, extra, hold=False))
        self.d.start()

    def tearDown(self):
        for p in (self.mx2, self.dnsmasq):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.d.cleanup()

    def records(self):
        path = f"{self.d.root}/mx2.jsonl"
        if not os.path.exists(path):
            return []
        import json
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip().endswith("}")]

    def test_mx_order_dead_first_mx_implicit_mx_and_permanent_dns_failures(self):
        messages = [("s@example.com", ["a@shop.test"], "mx1"), ("s@example.com", ["b@implicit.test"], "mx2"),
                    ("s@example.com", ["c@nullmx.test"], "mx3"), ("s@example.com", ["d@nxdomain.test"], "mx4")]
        acked, errors = harness.inject(self.d.smtp_port, messages, connections=1)
        self.assertEqual(errors, [])
        self.assertTrue(harness.wait_for(lambda: len(self.records()) == 2, 30), "MX delivery did not happen")
        self.assertEqual(sorted(r["recipient"] for r in self.records()), ["a@shop.test", "b@implicit.test"])
        stats = harness.wait_for(lambda: (s := self.d.stats())["delivery"]["queued"] == 0 and s, 20)
        self.assertTrue(stats)
        self.assertEqual(self.d.stop(), 0)
        events = self.d.events()
        delivered = {e["recipient"]: e for e in events if e["type"] == "delivered"}
        self.assertEqual(delivered["a@shop.test"]["mx"], "mx2.shop.test")
        self.assertEqual(delivered["a@shop.test"]["mx_ip"], "127.0.0.3")
        self.assertEqual(delivered["a@shop.test"]["site"], "mx1.shop.test,mx2.shop.test")
        bounced = {e["recipient"]: e for e in events if e["type"] == "bounced"}
        self.assertIn("null MX", bounced["c@nullmx.test"]["reply"])
        self.assertIn("NXDOMAIN", bounced["d@nxdomain.test"]["reply"])
        self.assertEqual(bounced["d@nxdomain.test"]["enhanced"], "5.1.2")


if __name__ == "__main__":
    harness.main()
