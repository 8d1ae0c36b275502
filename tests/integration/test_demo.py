"""`hikyaku demo`: the newcomer's first run. It must deliver every message
through a real daemon to a real sink, report the numbers truthfully, leave
nothing running, and keep or remove its temporary directory as told."""
import json
import os
import re
import shutil
import signal
import subprocess
import unittest

import harness


def demo_processes(root):
    """Live processes whose command line mentions `root` (the demo's children)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if root in cmdline and state != "Z":
            found.append(f"{pid}: {cmdline}")
    return found


def kept_dir(stderr):
    m = re.search(r"kept (\S+) for inspection", stderr)
    return m.group(1) if m else None


class DemoTest(unittest.TestCase):
    def run_demo(self, *flags, timeout=150):
        out = subprocess.run([harness.BIN, "demo", *flags], capture_output=True, timeout=timeout)
        return out.returncode, out.stdout.decode(), out.stderr.decode()

    def test_delivers_every_message_and_removes_its_directory(self):
        rc, stdout, stderr = self.run_demo("--messages", "300", "--timeout", "120s")
        self.assertEqual(rc, 0, stdout + stderr)
        self.assertRegex(stdout, r"injected\s+300 of 300 messages")
        self.assertRegex(stdout, r"delivered\s+300 \(the sink on 127\.0\.0\.1:\d+ accepted 300\)")
        self.assertRegex(stdout, r"deferred\s+0\n")
        self.assertRegex(stdout, r"bounced\s+0\n")
        self.assertRegex(stdout, r"rate\s+\d+ msg/s end to end")
        self.assertIn("hikyaku serve -c etc/hikyaku.toml", stdout)
        self.assertIn("hikyaku queues", stdout)
        # Progress goes to stderr; not a TTY here, so plain lines, no \r.
        self.assertRegex(stderr, r"\] delivered 300/300  injected 300/300")
        self.assertNotIn("\r", stderr)
        events = re.search(r"events\s+(\S+)", stdout).group(1)
        root = os.path.dirname(events)
        self.assertIn("removed with the temporary directory", stdout)
        self.assertFalse(os.path.exists(root), f"{root} should be removed without --keep")
        self.assertEqual(demo_processes(root), [])

    def test_keep_leaves_the_events_log_and_the_sink_saw_each_test_header(self):
        rc, stdout, stderr = self.run_demo("--messages", "300", "--connections", "4", "--keep")
        events = re.search(r"events\s+(\S+)", stdout)
        self.assertIsNotNone(events, stdout + stderr)
        root = os.path.dirname(events.group(1))
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        self.assertEqual(rc, 0, stdout + stderr)
        with open(events.group(1)) as f:
            records = [json.loads(l) for l in f if l.strip()]
        delivered = [e for e in records if e["type"] == "delivered"]
        self.assertEqual(len(delivered), 300)
        self.assertEqual(sorted(e["recipient"] for e in delivered), sorted(f"user{i}@demo.test" for i in range(300)))
        self.assertEqual([e for e in records if e["type"] in ("bounced", "deferred")], [])
        # What the receiver got carries the demo's headers.
        with open(os.path.join(root, "sink.jsonl")) as f:
            sink = [json.loads(l) for l in f if l.strip()]
        self.assertEqual(sorted(r["test"] for r in sink), sorted(f"demo-{i}" for i in range(300)))
        self.assertTrue(all(re.fullmatch(r"<demo-\d+\.\d+@mta\.demo\.test>", r["message_id"]) for r in sink))
        self.assertTrue(os.path.isdir(os.path.join(root, "spool")))
        self.assertEqual(demo_processes(root), [])

    def test_timeout_fails_with_a_message_and_stops_the_children(self):
        # Far more mail than fits in 3 s: the demo must give up on time.
        rc, stdout, stderr = self.run_demo("--messages", "10000000", "--timeout", "3s", timeout=60)
        root = kept_dir(stderr)
        self.assertIsNotNone(root, stderr)
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        # 75 when it timed out while sending; 69 if a slow (sanitizer) build
        # was still starting its daemon.
        self.assertIn(rc, (75, 69), stderr)
        self.assertIn("--timeout", stderr)
        self.assertEqual(stdout, "")
        self.assertEqual(demo_processes(root), [])

    def test_interrupt_stops_the_children_and_cleans_up(self):
        proc = subprocess.Popen([harness.BIN, "demo", "--messages", "10000000"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            first = proc.stderr.readline().decode()
            m = re.search(r"\(in (\S+)\)", first)
            self.assertIsNotNone(m, first)
            root = m.group(1)
            self.addCleanup(shutil.rmtree, root, ignore_errors=True)
            self.assertIn("sending", proc.stderr.readline().decode())
            self.assertNotEqual(demo_processes(root), [])  # the daemon is running now
            proc.send_signal(signal.SIGINT)
            _, rest = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 130)
        self.assertIn("interrupted", rest.decode())
        self.assertEqual(demo_processes(root), [])
        self.assertFalse(os.path.exists(root))


if __name__ == "__main__":
    harness.main()
