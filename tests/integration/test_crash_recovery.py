"""SIGKILL in the middle of pipelined injection from many connections.

Proves the spool's promise: every message that got "250" after DATA is in the
spool after a restart; a message that is in the spool without a "250" was at
least completely transmitted (its final dot was sent) — only the few in
flight at the kill, one per connection at most, can be in that state; no
message the client never finished sending is ever stored.
"""
import os
import random
import threading
import time
import unittest

import harness

CONNECTIONS = 24
RECIPIENTS_PER_MESSAGE = 2


class Sender(threading.Thread):
    def __init__(self, port, index, stop_event):
        super().__init__(daemon=True)
        self.port, self.index, self.stop_event = port, index, stop_event
        self.acked = set()      # tags that got 250 after the final dot
        self.finished = set()   # tags whose final dot was sent (acked or not)
        self.error = None

    def run(self):
        try:
            c = harness.SmtpClient(self.port, timeout=20)
            code, _ = c.read_reply()
            assert code == 220
            code, text = c.command("EHLO crash.test")
            assert code == 250 and "PIPELINING" in text
            n = 0
            while not self.stop_event.is_set() and n < 100000:
                tag = f"c{self.index}-m{n}"
                n += 1
                # One pipelined group: MAIL, RCPT x2, DATA (RFC 2920 3.1).
                c.send(f"MAIL FROM:<s{self.index}@example.com>\r\n"
                       f"RCPT TO:<a-{tag}@example.net>\r\nRCPT TO:<b-{tag}@example.org>\r\nDATA\r\n")
                replies = [c.read_reply()[0] for _ in range(4)]
                assert replies == [250, 250, 250, 354], replies
                body = harness.make_message(tag, size=random.Random(n).randint(200, 6000))
                c.send(harness.dot_stuff(body) + b"\r\n.\r\n")
                self.finished.add(tag)
                code, text = c.read_reply()
                assert code == 250, text
                self.acked.add(tag)
        except (ConnectionError, OSError, AssertionError) as e:
            self.error = e  # expected once the daemon is killed


class CrashRecoveryTest(unittest.TestCase):
    def test_sigkill_during_pipelined_injection_loses_no_acknowledged_message(self):
        d = harness.Daemon()
        try:
            d.start()
            stop = threading.Event()
            senders = [Sender(d.smtp_port, i, stop) for i in range(CONNECTIONS)]
            for s in senders:
                s.start()
            # Let traffic build up, then kill without warning mid-stream.
            deadline = time.time() + 20
            while time.time() < deadline and sum(len(s.acked) for s in senders) < 4000:
                time.sleep(0.05)
            d.kill()
            stop.set()
            for s in senders:
                s.join(timeout=30)
            acked = set().union(*(s.acked for s in senders))
            finished = set().union(*(s.finished for s in senders))
            self.assertGreater(len(acked), 100, "too little traffic before the kill to prove anything")
            print(f"acked before SIGKILL: {len(acked)}, finished: {len(finished)}", flush=True)

            stored = {}
            for r in d.spool_list():
                tag = r["message_id"].strip("<>").split("@")[0]
                stored.setdefault(tag, []).append(r)

            lost = acked - stored.keys()
            self.assertEqual(lost, set(), f"{len(lost)} acknowledged messages missing after SIGKILL")
            never_finished = stored.keys() - finished
            self.assertEqual(never_finished, set(), "stored messages whose final dot was never sent")
            unacked_stored = stored.keys() - acked
            self.assertLessEqual(len(unacked_stored), CONNECTIONS,
                                 "more stored-but-unacknowledged messages than transactions in flight")
            for tag, records in stored.items():
                self.assertEqual(sorted(r["recipient"].split("-")[0] for r in records), ["a", "b"], tag)

            # Restart: the daemon recovers exactly what the spool holds and keeps accepting.
            d.start()
            messages, recipients = d.recovered()
            self.assertEqual(messages, len(stored))
            self.assertEqual(recipients, len(stored) * RECIPIENTS_PER_MESSAGE)
            c = harness.SmtpClient(d.smtp_port)
            c.read_reply()
            c.command("EHLO again.test")
            self.assertEqual(c.command("MAIL FROM:<x@example.com>")[0], 250)
            self.assertEqual(c.command("RCPT TO:<after@example.net>")[0], 250)
            self.assertEqual(c.command("DATA")[0], 354)
            c.send(harness.make_message("after-restart") + b"\r\n.\r\n")
            self.assertEqual(c.read_reply()[0], 250)
            c.close()
            self.assertEqual(d.stop(), 0)
            self.assertEqual(len(d.spool_list()), len(stored) * RECIPIENTS_PER_MESSAGE + 1)
        finally:
            d.cleanup()


if __name__ == "__main__":
    harness.main()
