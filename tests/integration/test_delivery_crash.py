"""SIGKILL during the delivery of 20 000 messages, then restart: no message
is lost (every one is delivered or still queued), and duplicates stay within
the documented window (a 250 received, its spool mark not yet committed)."""
import collections
import time
import unittest

import harness

MESSAGES = 20000
# The window: transactions in flight plus marks waiting for the next group
# commit. With 20 connections and one message each it is a few dozen at most;
# the bound leaves room for a slow machine.
MAX_DUPLICATES = 200


class DeliveryCrashTest(unittest.TestCase):
    def test_sigkill_during_delivery_loses_nothing(self):
        d = harness.Daemon()
        sink = harness.Sink(d.root, "sink")
        try:
            with open(d.config_path, "w") as f:
                f.write(harness.delivery_config(d.root, {"crash.test": sink.port}, '\n[delivery]\nidle_timeout = "1s"\n'))
            d.start()
            messages = [(f"s{i}@example.com", [f"r{i}@crash.test"], f"x{i}") for i in range(MESSAGES)]
            # Kill once a good part has been delivered while injection still runs.
            import threading
            killed = threading.Event()

            def killer():
                harness.wait_for(lambda: len(sink.records()) >= MESSAGES // 4, 120, interval=0.05)
                d.kill()
                killed.set()

            k = threading.Thread(target=killer)
            k.start()
            acked, errors = harness.inject(d.smtp_port, messages, connections=8)
            k.join()
            self.assertTrue(killed.is_set())
            delivered_before = len(sink.records())
            self.assertGreater(delivered_before, 0)
            # Injection continues after the restart for what was not acknowledged.
            d.start()
            rest = [m for m in messages if m[2] not in set(acked)]
            acked2, errors2 = harness.inject(d.smtp_port, rest, connections=8)
            self.assertEqual(errors2, [])
            all_acked = set(acked) | set(acked2)
            self.assertEqual(len(all_acked), MESSAGES)

            def all_delivered():
                tags = {r["message_id"].strip("<>").split("@")[0] for r in sink.records()}
                return all_acked <= tags
            self.assertTrue(harness.wait_for(all_delivered, 180, interval=0.5), "some acknowledged mail never arrived")
            time.sleep(1)
            counts = collections.Counter(r["message_id"] for r in sink.records())
            duplicates = sum(c - 1 for c in counts.values())
            print(f"delivered before the kill: {delivered_before}; duplicates after restart: {duplicates}",
                  flush=True)
            self.assertLessEqual(duplicates, MAX_DUPLICATES)
            stats = harness.wait_for(lambda: (s := d.stats())["delivery"]["queued"] == 0 and s, 30)
            self.assertTrue(stats, "recipients still queued after everything arrived")
            self.assertEqual(d.stop(), 0)
            self.assertEqual(d.spool_list(), [])
        finally:
            sink.stop()
            d.cleanup()


if __name__ == "__main__":
    harness.main()
