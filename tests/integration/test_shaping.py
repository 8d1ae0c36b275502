"""Traffic shaping against `hikyaku sink` playing carriers, with hikyaku
binding several loopback sources (127.0.0.50, .51): per-source caps are
never exceeded, an unknown receiver limit is found, warm-up caps spill to
another source, and a reload applies new sources (or nothing, when the new
file is broken) without a restart."""
import datetime
import json
import os
import signal
import subprocess
import time
import unittest

import harness

SOURCES = """
[[source]]
name = "s50"
address = "127.0.0.50"

[[source]]
name = "s51"
address = "127.0.0.51"
"""

FAST = """
[delivery]
idle_timeout = "1s"
connect_timeout = "2s"
banner_timeout = "2s"

[retry]
initial = "1s"
max = "2s"
max_age = "1h"
"""


def seconds(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


class ShapingTest(harness.DeliveryCase):
    def test_per_source_connection_cap_is_never_exceeded(self):
        # The sink refuses a 4th connection from one IP with 421 and counts
        # it: with the cap configured, hikyaku must never be refused, while
        # both sources carry the load.
        sink = self.sink("carrier", "--max-connections-per-ip", "3", "--reply-delay", "20ms")
        # The route's host is an IP literal: the route names the site.
        self.write_config({"carrier.test": (sink.port, "carrier")},
                          FAST.replace("[delivery]", "[delivery]\nmax_connections_per_site = 20") + """
[[site]]
name = "carrier"
mx_patterns = ["*.carrier.invalid"]
max_connections_per_source = 3
""" + SOURCES)
        self.d.start()
        self.inject(600, "carrier.test")
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) >= 600, 60), f"{len(sink.records())} delivered")
        stats = sink.stats()
        self.assertEqual(stats.get("connection_limited", 0), 0, stats)
        self.assertEqual(stats.get("refused_connections", 0), 0, stats)
        by_source = {}
        for e in self.events("delivered"):
            by_source[e["source"]] = by_source.get(e["source"], 0) + 1
            self.assertEqual(e["pool"], "default")
        self.assertEqual(set(by_source), {"s50", "s51"}, by_source)
        self.assertEqual(sum(by_source.values()), 600)
        clients = {r["client"] for r in sink.records()}
        self.assertEqual(clients, {"127.0.0.50", "127.0.0.51"})
        status, body, _ = self.d.http("GET", "/api/v1/shaping")
        self.assertEqual(status, 200, body)
        pairs = json.loads(body)["pairs"]
        self.assertEqual({(p["source"], p["site"]) for p in pairs}, {("s50", "carrier"), ("s51", "carrier")})
        for p in pairs:
            self.assertEqual(p["configured_max_connections"], 3)
            self.assertLessEqual(p["max_connections"], 3)

    def test_unknown_receiver_limit_is_found_with_few_throttling_replies(self):
        # The carrier: 3 connections and 300 recipients a minute per
        # IP, 450 4.7.1 beyond; hikyaku knows none of it.
        sink = self.sink("carrier", "--max-connections-per-ip", "3", "--rate-per-ip", "300",
                         "--rate-reply", "450 4.7.1 rate limited")
        self.write_config({"carrier.test": sink.port}, FAST.replace('idle_timeout = "1s"', 'idle_timeout = "5s"')
                          + SOURCES)
        self.d.start()
        self.inject(1700, "carrier.test")
        time.sleep(95)
        events = [e for e in self.d.events() if e["type"] in ("delivered", "deferred")]
        start = min(seconds(e["ts"]) for e in events)
        window = [e for e in events if 60 <= seconds(e["ts"]) - start < 90]
        delivered = sum(1 for e in window if e["type"] == "delivered")
        throttled = sum(1 for e in window if e.get("throttled"))
        allowed = 2 * 300 * 30 / 60  # two source IPs, 30 s
        self.assertGreaterEqual(delivered, 0.85 * allowed, f"{delivered} delivered of {allowed} allowed")
        self.assertLessEqual(throttled, 0.03 * max(1, len(window)), f"{throttled} throttled of {len(window)}")
        # The limits it learned are visible, with their reason.
        changes = self.events("shaping")
        self.assertTrue(any("holding" in e["reason"] for e in changes), [e["reason"] for e in changes][:5])
        for e in changes:
            self.assertIn(e["source"], ("s50", "s51"))

    def test_warmup_cap_spills_to_the_other_source(self):
        sink = self.sink("gmail")
        today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        self.write_config({"gmail.test": sink.port}, FAST + SOURCES.replace(
            'address = "127.0.0.50"\n', f'address = "127.0.0.50"\nwarmup = "new"\nwarmup_start = "{today}"\n') + """
[[warmup]]
name = "new"
days = [{ day = 1, per_day = 40, per_hour = 25 }]
""")
        self.d.start()
        self.inject(200, "gmail.test")
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) >= 200, 30), f"{len(sink.records())} delivered")
        by_client = {}
        for r in sink.records():
            by_client[r["client"]] = by_client.get(r["client"], 0) + 1
        self.assertLessEqual(by_client.get("127.0.0.50", 0), 25, by_client)
        self.assertGreater(by_client.get("127.0.0.50", 0), 0, by_client)
        self.assertEqual(sum(by_client.values()), 200)
        status, body, _ = self.d.http("GET", "/api/v1/shaping")
        source = [s for s in json.loads(body)["sources"] if s["name"] == "s50"][0]
        self.assertEqual(source["warmup"]["cap_this_hour"], 25)
        self.assertEqual(source["warmup"]["day"], 1)
        self.assertLessEqual(source["warmup"]["sent_this_hour"], 25)

    def test_a_source_that_cannot_be_bound_is_suspended_and_skipped(self):
        # 192.0.2.1 (TEST-NET-1) is on no interface here: bind() fails at
        # once with EADDRNOTAVAIL, before any packet is sent.
        sink = self.sink("live")
        self.write_config({"live.test": sink.port}, FAST + """
[[source]]
name = "ghost"
address = "192.0.2.1"

[[source]]
name = "s50"
address = "127.0.0.50"
""")
        self.d.start()
        for burst in range(3):
            self.inject(20, "live.test", tag=f"g{burst}-", connections=2)
            time.sleep(1.5)
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) >= 60, 30), f"{len(sink.records())} delivered")
        self.assertEqual({r["client"] for r in sink.records()}, {"127.0.0.50"})
        suspended = self.events("source_suspended")
        self.assertEqual(len(suspended), 1, suspended)  # once, not once per delivery
        self.assertEqual(suspended[0]["source"], "ghost")
        self.assertIn("192.0.2.1", suspended[0]["reason"])
        self.assertEqual([e for e in self.events("bounced")], [])
        status, body, _ = self.d.http("GET", "/api/v1/shaping")
        ghost = [s for s in json.loads(body)["sources"] if s["name"] == "ghost"][0]
        self.assertTrue(ghost["suspended"])

    def test_reload_adds_a_source_and_a_broken_file_changes_nothing(self):
        sink = self.sink("live")
        one_source = FAST + SOURCES[:SOURCES.index("[[source]]\nname = \"s51\"")]
        self.write_config({"live.test": sink.port}, one_source)
        self.d.start()
        self.inject(50, "live.test", tag="a")
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) >= 50, 20))
        self.assertEqual({r["client"] for r in sink.records()}, {"127.0.0.50"})

        # A broken file: the CLI says why (78) and the daemon keeps going.
        with open(self.d.config_path) as f:
            good = f.read()
        with open(self.d.config_path, "w") as f:
            f.write(good + '\n[[source]]\nname = "s52"\naddress = "not-an-ip"\n')
        out = subprocess.run([harness.BIN, "reload", "-c", self.d.config_path], capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 78, out.stderr.decode())
        self.assertRegex(out.stderr.decode(), r"hikyaku\.toml:\d+:\d+: source\[1\]\.address|hikyaku\.toml:\d+:\d+:")
        self.d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(harness.wait_for(lambda: self.events("reload"), 10), "no reload event")
        failed = self.events("reload")[0]
        self.assertFalse(failed["ok"])
        self.assertRegex(failed["errors"], r"hikyaku\.toml:\d+:\d+: ")
        self.inject(20, "live.test", tag="b")
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) >= 70, 20))
        self.assertEqual({r["client"] for r in sink.records()}, {"127.0.0.50"})

        # A good file with a second source: used without a restart.
        with open(self.d.config_path, "w") as f:
            f.write(harness.delivery_config(self.d.root, {"live.test": sink.port}, FAST + SOURCES))
        self.d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(harness.wait_for(lambda: len(self.events("reload")) >= 2, 10), "no second reload event")
        self.assertTrue(self.events("reload")[1]["ok"])
        # Each burst after the idle timeout opens a new connection, and the
        # pool's round robin alternates its sources.
        for burst in range(4):
            time.sleep(1.5)
            self.inject(25, "live.test", tag=f"c{burst}-", connections=2)
        self.assertTrue(harness.wait_for(lambda: len(sink.records()) >= 170, 20))
        later = [r for r in sink.records() if r["recipient"].startswith("c")]
        self.assertIn("127.0.0.51", {r["client"] for r in later})
        self.assertEqual(self.d.proc.poll(), None, "the daemon must survive both reloads")


if __name__ == "__main__":
    harness.main()
