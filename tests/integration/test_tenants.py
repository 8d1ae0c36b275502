"""Tenants at intake, end to end: mail names its tenant with an
X-Hikyaku-Tenant header (from a relay network) or the HTTP field `tenant`,
an unknown tenant is refused (550 5.7.1 / 400), and the tenant's pool decides
the source IP its mail leaves from — also for mail already queued when the
operator moves the tenant to quarantine, and across a restart (the spool
keeps each message's tenant)."""
import json
import unittest

import harness

FAST = """
[delivery]
idle_timeout = "1s"
connect_timeout = "2s"
banner_timeout = "2s"
pool = "main"

[retry]
initial = "1s"
max = "2s"
max_age = "1h"

[[site]]
name = "carrier"
mx_patterns = ["*.carrier.invalid"]

[[source]]
name = "s50"
address = "127.0.0.50"

[[source]]
name = "s51"
address = "127.0.0.51"

[[pool]]
name = "main"
sources = [{ source = "s50" }]

[[pool]]
name = "quarantine"
sources = [{ source = "s51" }]

[[tenant]]
name = "acme"

[[tenant]]
name = "shop"
"""


class TenantTest(harness.DeliveryCase):
    def start_daemon(self, sink):
        self.start({"carrier.test": (sink.port, "carrier")}, FAST)

    def send(self, tag, headers="", expect=250):
        """One message to <tag>@carrier.test from 127.0.0.1 (a relay network)
        with extra header lines; returns the DATA reply."""
        c = harness.SmtpClient(self.d.smtp_port)
        try:
            c.read_reply()
            c.command("EHLO app.test")
            c.command("MAIL FROM:<app@example.com>")
            c.command(f"RCPT TO:<{tag}@carrier.test>")
            self.assertEqual(c.command("DATA")[0], 354)
            c.send(headers.encode() + harness.make_message(tag, size=500) + b"\r\n.\r\n")
            code, text = c.read_reply()
            self.assertEqual(code, expect, text)
            c.command("QUIT")
            return code, text
        finally:
            c.close()

    def test_header_and_http_field_name_the_tenant_and_unknown_ones_are_refused(self):
        sink = self.sink("carrier")
        self.start_daemon(sink)
        self.send("h0")
        self.send("h1", "X-Hikyaku-Tenant: acme\r\nX-Hikyaku-Priority: high\r\n")
        _, text = self.send("h2", "X-Hikyaku-Tenant: nobody\r\n", expect=550)
        self.assertIn("5.7.1", text)
        self.assertIn('unknown tenant "nobody"', text)
        _, text = self.send("h3", "X-Hikyaku-Priority: urgent\r\n", expect=550)
        self.assertIn("expected high or normal", text)

        def post(fields):
            doc = {"from": "app@example.com", "to": ["j1@carrier.test"], "subject": "s", "text": "t", **fields}
            status, body, ctype = self.d.http("POST", "/api/v1/messages", json.dumps(doc))
            return status, json.loads(body), ctype

        status, body, ctype = post({"tenant": "nobody"})
        self.assertEqual((status, body["field"], ctype), (400, "/tenant", "application/problem+json"), body)
        status, body, _ = post({"priority": "urgent"})
        self.assertEqual((status, body["field"]), (400, "/priority"), body)
        status, body, _ = post({"tenant": "shop", "priority": "high"})
        self.assertEqual(status, 202, body)

        received = {e["recipient"]: e for e in self.wait_events("received", 3)}
        self.assertEqual(set(received), {"h0@carrier.test", "h1@carrier.test", "j1@carrier.test"})
        self.assertNotIn("tenant", received["h0@carrier.test"])
        self.assertEqual((received["h1@carrier.test"]["tenant"], received["h1@carrier.test"]["priority"]),
                         ("acme", "high"))
        self.assertEqual(received["j1@carrier.test"]["tenant"], "shop")
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) >= 3, 20), sink.records())
        # The headers are instructions to hikyaku, never passed on: h1 (sent
        # with them) and h0 (without; the same length otherwise) are stored
        # and delivered at the same size.
        sizes = {r["recipient"]: r["size"] for r in sink.records()}
        self.assertEqual(received["h1@carrier.test"]["size"], received["h0@carrier.test"]["size"])
        self.assertEqual(sizes["h1@carrier.test"], sizes["h0@carrier.test"])
        stats = self.d.stats()
        self.assertEqual(stats["intake"]["refused"], 2, stats)
        self.assertEqual({r["client"] for r in sink.records()}, {"127.0.0.50"})

    def test_quarantine_moves_queued_mail_to_the_other_source_and_survives_a_restart(self):
        sink = self.sink("carrier")
        self.start_daemon(sink)
        # Hold the site so the mail is queued when the tenant moves.
        rc, out, err = self.cli("suspend", "--site", "carrier", "--for", "1h", "--reason", "hold")
        self.assertEqual(rc, 0, err)
        suspension = out.strip()
        for i in range(10):
            self.send(f"acme{i}", "X-Hikyaku-Tenant: acme\r\n")
            self.send(f"other{i}")
        rc, _, err = self.cli("move-tenant", "acme", "quarantine")
        self.assertEqual(rc, 0, err)
        self.wait_events("tenant_moved", 1)

        # A restart: the queue comes back from the spool with each message's
        # tenant, the move and the suspension from shaping-state.json.
        self.assertEqual(self.d.stop(), 0)
        self.start()
        self.assertEqual(self.d.recovered(), (20, 20))
        self.assertEqual(sink.records(), [])
        rc, _, err = self.cli("resume", suspension)
        self.assertEqual(rc, 0, err)
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) >= 20, 30), f"{len(sink.records())} delivered")

        by_client = {}
        for r in sink.records():
            by_client.setdefault(r["client"], set()).add(r["recipient"].split("@")[0].rstrip("0123456789"))
        self.assertEqual(by_client, {"127.0.0.51": {"acme"}, "127.0.0.50": {"other"}})
        delivered = self.wait_events("delivered", 20)
        for e in delivered:
            want = ("s51", "quarantine") if e["recipient"].startswith("acme") else ("s50", "main")
            self.assertEqual((e["source"], e["pool"]), want, e)


if __name__ == "__main__":
    harness.main()
