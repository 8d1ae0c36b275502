"""The operator's write endpoints through the CLI (`hikyaku suspend`,
`resume`, `bounce`, `reload`, `shaping --json`) against a daemon delivering
to a `hikyaku sink`: a suspended site gets no connection and its open ones
close, a resumed one gets its mail; a broken file is refused with every
FILE:LINE:COL error (78) while delivery goes on; queued mail is bounced with
the operator's reason."""
import json
import re
import os
import subprocess
import time
import unittest

import harness

FAST = """
[delivery]
idle_timeout = "30s"
connect_timeout = "2s"
banner_timeout = "2s"

[retry]
initial = "1s"
max = "2s"
max_age = "1h"
"""

SITE = """
[[site]]
name = "carrier"
mx_patterns = ["*.carrier.invalid"]
"""


class OperatorTest(harness.DeliveryCase):
    def start(self, sink, extra=""):
        super().start({"carrier.test": (sink.port, "carrier")}, FAST + SITE + extra)

    def inject(self, n, tag, connections=2):
        super().inject(n, "carrier.test", tag, connections)

    def test_suspended_site_holds_no_connection_and_resumes(self):
        sink = self.sink("carrier")
        self.start(sink)
        # Mail first, so connections are open (and idle, held for 30 s).
        self.inject(10, "a")
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) >= 10, 20), f"{len(sink.records())} delivered")
        self.assertTrue(harness.wait_for(lambda: sink.stats().get("open_connections", 0) > 0, 5), sink.stats())

        rc, out, err = self.cli("suspend", "--site", "carrier", "--for", "10m", "--reason", "carrier asked")
        self.assertEqual(rc, 0, err)
        suspension = int(out.strip())
        self.assertGreater(suspension, 0)
        # The idle connections close at once, not after idle_timeout (30 s).
        self.assertTrue(harness.wait_for(lambda: sink.stats().get("open_connections", 0) == 0, 5), sink.stats())
        connections = sink.stats()["connections"]

        self.inject(20, "b")
        time.sleep(3)
        stats = sink.stats()
        self.assertEqual(stats["connections"], connections, stats)
        self.assertEqual(stats.get("open_connections", 0), 0, stats)
        self.assertEqual(len(sink.records()), 10)
        suspended = self.wait_events("suspended", 1)
        self.assertEqual(len(suspended), 1, suspended)
        self.assertEqual(suspended[0]["site"], "carrier")
        self.assertEqual(suspended[0]["reason"], "carrier asked")
        rc, out, err = self.cli("shaping", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual([s["id"] for s in json.loads(out)["suspensions"]], [suspension])

        rc, _, err = self.cli("resume", str(suspension))
        self.assertEqual(rc, 0, err)
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) >= 30, 20), f"{len(sink.records())} delivered")
        self.assertEqual(len(self.wait_events("resumed", 1)), 1)
        self.assertEqual(len(self.events("delivered")), 30)
        self.assertEqual(self.events("bounced"), [])
        # Resuming it again: no such suspension (the daemon's 404, exit 64).
        rc, _, err = self.cli("resume", str(suspension))
        self.assertEqual(rc, 64, err)
        self.assertIn("no such suspension", err)

    def test_suspend_refusals(self):
        sink = self.sink("carrier")
        self.start(sink)
        rc, _, err = self.cli("suspend", "--for", "10m")
        self.assertEqual(rc, 64, err)
        self.assertIn("names a site, a source or a tenant", err)
        rc, _, err = self.cli("suspend", "--source", "nowhere")
        self.assertEqual(rc, 64, err)
        self.assertIn("no such source: nowhere", err)
        rc, _, err = self.cli("suspend", "--site", "carrier", "--for", "ten minutes")
        self.assertEqual(rc, 64, err)
        status, body, ctype = self.d.http("POST", "/api/v1/suspensions", '{"site": ')
        self.assertEqual(status, 400, body)
        self.assertEqual(ctype, "application/problem+json")
        self.assertEqual(self.events("suspended"), [])
        self.assertEqual(self.d.proc.poll(), None)

    def test_reload_refuses_a_broken_file_and_delivery_goes_on(self):
        sink = self.sink("carrier")
        self.start(sink)
        with open(self.d.config_path) as f:
            good = f.read()
        with open(self.d.config_path, "w") as f:
            f.write(good + '\n[[source]]\nname = "s52"\naddress = "not-an-ip"\n'
                    + '\n[[pool]]\nname = "p"\nsources = ["ghost"]\n')
        # The CLI's own copy is valid: the daemon finds its file broken (422).
        rc, out, err = self.cli("reload")
        self.assertEqual(rc, 78, err)
        lines = [l for l in err.splitlines() if re.match(r"^\S*hikyaku\.toml:\d+:\d+: ", l)]
        self.assertGreaterEqual(len(lines), 2, err)  # every error, not just the first
        self.assertIn("HTTP 422", err)
        failed = self.wait_events("reload", 1)
        self.assertEqual(len(failed), 1)
        self.assertFalse(failed[0]["ok"])
        # The CLI checks its file first, too.
        local = subprocess.run([harness.BIN, "reload", "-c", self.d.config_path], capture_output=True, timeout=30)
        self.assertEqual(local.returncode, 78, local.stderr.decode())
        self.assertRegex(local.stderr.decode(), r"hikyaku\.toml:\d+:\d+: ")

        self.inject(10, "a")
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) >= 10, 20), f"{len(sink.records())} delivered")

        with open(self.d.config_path, "w") as f:
            f.write(good)
        rc, out, err = self.cli("reload")
        self.assertEqual(rc, 0, err)
        self.assertIn("reloaded", out)
        self.assertTrue(self.wait_events("reload", 2)[-1]["ok"])
        # Over HTTP directly: an empty POST is fine.
        status, body, _ = self.d.http("POST", "/api/v1/reload", "")
        self.assertEqual((status, json.loads(body)), (200, {"ok": True}))
        self.assertEqual(self.d.proc.poll(), None)

    def test_bounce_queued_mail_of_a_site(self):
        sink = self.sink("carrier")
        self.start(sink)
        # Held by a suspension, the mail stays queued; then it is bounced.
        rc, out, err = self.cli("suspend", "--site", "carrier")
        self.assertEqual(rc, 0, err)
        self.inject(15, "q")
        self.assertTrue(harness.wait_for(lambda: self.d.stats()["delivery"]["queued"] == 15, 10), self.d.stats())
        rc, out, err = self.cli("bounce", "--site", "carrier", "--reason", "policy")
        self.assertEqual(rc, 0, err)
        self.assertIn("15 recipients bounced", out)
        bounced = self.wait_events("bounced", 15)
        self.assertEqual(len(bounced), 15)
        for e in bounced:
            self.assertIn("policy", e["reply"])
            self.assertEqual(e["site"], "carrier")
        self.assertEqual(sink.records(), [])
        self.assertTrue(harness.wait_for(lambda: self.d.stats()["delivery"]["queued"] == 0, 10), self.d.stats())
        rc, _, err = self.cli("bounce", "--reason", "policy")
        self.assertEqual(rc, 64, err)
        rc, _, err = self.cli("bounce", "--tenant", "nobody")
        self.assertEqual(rc, 64, err)
        self.assertIn("no such tenant", err)

    def test_shaping_json_lists_the_pairs(self):
        sink = self.sink("carrier")
        self.start(sink)
        self.inject(5, "p")
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) >= 5, 20))
        # The view is a snapshot the dispatcher publishes (about once a second).
        def pairs():
            rc, out, err = self.cli("shaping", "--json")
            self.assertEqual(rc, 0, err)
            return json.loads(out)
        harness.wait_for(lambda: pairs()["pairs"], 10)
        doc = pairs()
        self.assertEqual({(p["source"], p["site"]) for p in doc["pairs"]}, {("default", "carrier")}, doc)
        self.assertEqual(doc["suspensions"], [])
        status, body, _ = self.d.http("GET", "/api/v1/shaping")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["pairs"][0]["site"], "carrier")

    def test_move_tenant(self):
        sink = self.sink("carrier")
        self.start(sink, """
[[pool]]
name = "default"
sources = [{ source = "default" }]

[[pool]]
name = "quarantine"
sources = [{ source = "default" }]

[[tenant]]
name = "acme"
""")
        rc, _, err = self.cli("move-tenant", "acme", "quarantine")
        self.assertEqual(rc, 0, err)
        self.assertEqual([e["pool"] for e in self.wait_events("tenant_moved", 1)], ["quarantine"])
        rc, _, err = self.cli("move-tenant", "nobody", "quarantine")
        self.assertEqual(rc, 64, err)
        self.assertIn("no such tenant", err)
        rc, _, err = self.cli("move-tenant", "acme", "deep")
        self.assertEqual(rc, 64, err)
        self.assertIn("no such pool", err)
        status, body, _ = self.d.http("POST", "/api/v1/tenants/nobody", '{"pool": "quarantine"}')
        self.assertEqual(status, 404, body)
        status, body, _ = self.d.http("POST", "/api/v1/tenants/acme", '{"pool": "deep"}')
        self.assertEqual(status, 400, body)


if __name__ == "__main__":
    harness.main()
