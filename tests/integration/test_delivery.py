"""Delivery against `hikyaku sink` on loopback: exactly-once delivery,
bounces never retried, greylisting overcome by retries, a blackhole MX that
costs one probing connection while live sites keep flowing."""
import json
import time
import unittest

import harness

FAST_RETRY = """
[delivery]
idle_timeout = "1s"
connect_timeout = "2s"
banner_timeout = "2s"
host_down_initial = "2s"
host_down_max = "10s"

[retry]
initial = "1s"
max = "2s"
max_age = "1h"
"""


def tag_of(record):
    return record["message_id"].strip("<>").split("@")[0]


class DeliveryTest(harness.DeliveryCase):
    def start(self, routes, extra=FAST_RETRY):
        super().start(routes, extra)

    def test_all_mail_delivered_exactly_once_with_event_fields(self):
        sink = self.sink("live")
        self.start({"live.test": sink.port})
        messages = [(f"s{i}@example.com", [f"a{i}@live.test", f"b{i}@live.test"], f"m{i}") for i in range(500)]
        acked, errors = harness.inject(self.d.smtp_port, messages)
        self.assertEqual(errors, [])
        self.assertEqual(len(acked), 500)
        got = harness.wait_for(lambda: len(sink.records()) >= 1000 and sink.records(), 60)
        time.sleep(0.5)  # anything extra (a duplicate) would show now
        records = sink.records()
        self.assertEqual(len(records), 1000)
        self.assertEqual(sorted(r["recipient"] for r in records),
                         sorted([f"a{i}@live.test" for i in range(500)] + [f"b{i}@live.test" for i in range(500)]))
        stats = harness.wait_for(lambda: (s := self.d.stats())["delivery"]["queued"] == 0 and s, 20)
        self.assertEqual(stats["delivery"]["delivered"], 1000)
        self.assertEqual(self.d.stop(), 0)
        delivered = self.events("delivered")
        self.assertEqual(len(delivered), 1000)
        e = delivered[0]
        for field in ("ts", "id", "recipient", "site", "mx", "mx_ip", "source", "source_ip", "pool", "code",
                      "enhanced", "reply", "attempt", "queue_time_ms"):
            self.assertIn(field, e)
        self.assertEqual(e["code"], 250)
        self.assertEqual(e["mx_ip"], "127.0.0.1")
        # No [[source]] configured: the implicit source and pool.
        self.assertEqual(e["source"], "default")
        self.assertEqual(e["pool"], "default")
        self.assertEqual(e["source_ip"], "127.0.0.1")
        self.assertEqual(e["attempt"], 1)
        # Delivered messages leave the spool.
        self.assertEqual(self.d.spool_list(), [])

    def test_unknown_users_bounce_once_and_are_never_retried(self):
        sink = self.sink("picky", "--unknown-users", "nobody.*")
        self.start({"picky.test": sink.port})
        messages = [("s@example.com", ["nobody1@picky.test", "ok1@picky.test"], "b1"),
                    ("s@example.com", ["nobody2@picky.test"], "b2")]
        acked, errors = harness.inject(self.d.smtp_port, messages, connections=1)
        self.assertEqual(errors, [])
        harness.wait_for(lambda: len(self.events("bounced")) >= 2 and len(self.events("delivered")) >= 1, 20)
        time.sleep(3)  # longer than retry.initial: a wrongful retry would show
        self.d.stop()
        bounced = self.events("bounced")
        self.assertEqual(sorted(e["recipient"] for e in bounced), ["nobody1@picky.test", "nobody2@picky.test"])
        for e in bounced:
            self.assertEqual(e["code"], 550)
            self.assertEqual(e["enhanced"], "5.1.1")
        self.assertEqual(self.events("deferred"), [])
        self.assertEqual([r["recipient"] for r in sink.records()], ["ok1@picky.test"])
        self.assertEqual(self.d.spool_list(), [])

    def test_greylisted_recipients_are_delivered_after_a_retry(self):
        sink = self.sink("grey", "--greylist", "1s")
        self.start({"grey.test": sink.port})
        acked, errors = harness.inject(self.d.smtp_port, [("s@example.com", ["g@grey.test"], "g1")], connections=1)
        self.assertEqual(errors, [])
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) == 1, 30), "never delivered after greylisting")
        self.d.stop()
        deferred = self.events("deferred")
        self.assertGreaterEqual(len(deferred), 1)
        self.assertEqual(deferred[0]["code"], 450)
        delivered = self.events("delivered")
        self.assertEqual(len(delivered), 1)
        self.assertGreaterEqual(delivered[0]["attempt"], 2)

    def test_blackhole_mx_holds_one_probe_while_live_sites_flow(self):
        live1 = self.sink("live1")
        live2 = self.sink("live2")
        hole = self.sink("hole", "--blackhole")
        self.start({"live1.test": live1.port, "live2.test": live2.port, "hole.test": hole.port})
        messages = []
        for i in range(600):
            domain = ["live1.test", "live2.test", "hole.test"][i % 3]
            messages.append((f"s{i}@example.com", [f"r{i}@{domain}"], f"h{i}"))
        max_hole_connections = 0
        import threading
        done = threading.Event()

        def watch():
            nonlocal max_hole_connections
            while not done.is_set():
                try:
                    for s in json.loads(self.d.http("GET", "/api/v1/queues")[1])["sites"]:
                        if s["site"].endswith(f":{hole.port}"):
                            c = s["connections"]["fresh"] + s["connections"]["retry"]
                            max_hole_connections = max(max_hole_connections, c)
                except Exception:  # noqa: BLE001 - the daemon may be busy; try again
                    pass
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        acked, errors = harness.inject(self.d.smtp_port, messages, connections=4)
        self.assertEqual(errors, [])
        ok = harness.wait_for(lambda: len(live1.records()) + len(live2.records()) >= 400, 60)
        time.sleep(3)
        done.set()
        watcher.join()
        self.assertTrue(ok, "live sites did not receive their mail")
        # Once the blackhole is known to be down, live mail still flows at once
        # (a dead host on one site says nothing about the others).
        def hole_down():
            for s in json.loads(self.d.http("GET", "/api/v1/queues")[1])["sites"]:
                if s["site"].endswith(f":{hole.port}"):
                    return any(h["state"] != "up" for h in s["hosts"])
            return False
        self.assertTrue(harness.wait_for(hole_down, 20), "the blackhole host was never marked down")
        more = [(f"t{i}@example.com", [f"late{i}@live1.test"], f"late{i}") for i in range(100)]
        acked, errors = harness.inject(self.d.smtp_port, more, connections=2)
        self.assertEqual(errors, [])
        self.assertTrue(harness.wait_for(lambda: len(live1.records()) >= 300, 10),
                        "live mail stalled while the blackhole was down")
        self.assertLessEqual(max_hole_connections, 1, "the blackhole site held more than one connection")
        queues = json.loads(self.d.http("GET", "/api/v1/queues")[1])
        hole_site = [s for s in queues["sites"] if s["site"].endswith(f":{hole.port}")][0]
        self.assertEqual(hole_site["delivered"], 0)
        self.assertGreaterEqual(hole_site["waiting"] + hole_site["fresh"] + hole_site["retry"], 200)
        self.assertTrue(any(h["state"] != "up" for h in hole_site["hosts"]))
        deferred = [e for e in self.d.events() if e["type"] == "deferred" and e["recipient"].endswith("hole.test")]
        self.assertTrue(deferred, "no deferral event explains the waiting recipients")
        # The operator's view from the command line shows the same.
        import subprocess
        out = subprocess.run([harness.BIN, "queues", "-c", self.d.client_config()], capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        table = out.stdout.decode()
        hole_line = [l for l in table.splitlines() if f":{hole.port}" in l][0]
        self.assertRegex(hole_line, r"\[127\.0\.0\.1 (down|probing)\]")
        live_line = [l for l in table.splitlines() if f":{live1.port}" in l][0]
        self.assertIn("250", live_line)

    def test_site_refusing_at_the_greeting_bounces_at_once(self):
        # Rule R6/D2 of outcome.cc: every MX answers 554 to the greeting.
        # Before the fix the verdict was dropped and the recipients were
        # deferred as "all hosts down" until they expired days later.
        import socket
        import threading
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(0.2)
        port = server.getsockname()[1]
        stop = threading.Event()
        greeted = []

        def serve():
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                greeted.append(1)
                conn.sendall(b"554 5.7.1 no SMTP service for you\r\n")
                conn.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            self.start({"refusing.test": port})
            messages = [(f"s{i}@example.com", [f"r{i}@refusing.test"], f"m{i}") for i in range(20)]
            acked, errors = harness.inject(self.d.smtp_port, messages, connections=2)
            self.assertEqual(errors, [])
            self.assertTrue(harness.wait_for(lambda: len(self.events("bounced")) >= 20, 15),
                            f"bounced: {len(self.events('bounced'))}, deferred: {len(self.events('deferred'))}")
            bounced = self.events("bounced")
            self.assertEqual(len(bounced), 20)
            self.assertEqual(bounced[0]["code"], 554)
            self.assertEqual(bounced[0]["enhanced"], "5.7.1")
            self.assertIn("no SMTP service", bounced[0]["reply"])
            self.assertEqual(self.events("deferred"), [])
            self.assertTrue(harness.wait_for(lambda: self.d.stats()["delivery"]["queued"] == 0, 10))
        finally:
            stop.set()
            t.join(2)
            server.close()


if __name__ == "__main__":
    harness.main()
