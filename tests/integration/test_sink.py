"""`hikyaku sink`: the counting, discarding SMTP receiver, and its difficult-receiver modes.

Each test starts its own `hikyaku sink` on 127.0.0.1 port 0, reads the ready
line for the port, talks SMTP with smtplib or a raw socket, and stops the
sink. Every wait is bounded.
"""
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
import unittest

from harness import BIN, main

TIMEOUT = 10  # seconds, for every socket and process wait


class Sink:
    """One `hikyaku sink` process."""

    def __init__(self, *args):
        self.root = tempfile.mkdtemp(prefix="hikyaku-sink-it-")
        self.args = list(args)
        self.proc = None
        self.port = None
        self.stderr_path = os.path.join(self.root, "sink.stderr")

    def path(self, name):
        return os.path.join(self.root, name)

    def start(self):
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([BIN, "sink", "--listen", "127.0.0.1:0", "--hostname", "sink.test",
                                      *self.args], stdout=subprocess.PIPE, stderr=self.stderr, cwd=self.root)
        deadline = time.time() + TIMEOUT
        line = b""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(rb"hikyaku sink ready listen=127\.0\.0\.1:(\d+)$", line.strip())
            if m:
                self.port = int(m.group(1))
                return self
        self.proc.kill()
        raise RuntimeError(f"sink did not become ready: {line!r}; stderr: {self.read_stderr()}")

    def read_stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def smtp(self):
        return smtplib.SMTP("127.0.0.1", self.port, timeout=TIMEOUT)

    def wait_exit(self):
        """Waits for the process to end by itself; returns (exit code, stdout lines after ready)."""
        try:
            out, _ = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError("sink did not exit within %d s" % TIMEOUT)
        return self.proc.returncode, out.decode().splitlines()

    def stop(self):
        """SIGTERM; returns the summary JSON it prints."""
        self.proc.send_signal(signal.SIGTERM)
        code, lines = self.wait_exit()
        assert code == 0, (code, lines, self.read_stderr())
        assert lines, "no summary line"
        return json.loads(lines[-1])

    def jsonl(self, name="received.jsonl"):
        with open(self.path(name)) as f:
            return [json.loads(l) for l in f if l.strip()]

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        if self.proc:
            self.proc.stdout.close()
            self.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)


def message(tag, body_lines=20):
    return (f"From: <sender@example.com>\r\nTo: <rcpt@example.net>\r\nSubject: sink {tag}\r\n"
            f"Message-ID: <{tag}@it.test>\r\nX-Hikyaku-Test: {tag}\r\n\r\n" +
            ("body line " * 7 + "\r\n") * body_lines)


class SinkTest(unittest.TestCase):
    def sink(self, *args):
        s = Sink(*args)
        self.addCleanup(s.cleanup)
        return s.start()

    def test_accepts_counts_and_logs_every_recipient(self):
        s = self.sink("--jsonl", "received.jsonl", "--stats-file", "stats.json")
        with s.smtp() as c:
            refused = c.sendmail("sender@example.com", ["a@example.net", "b@example.org"], message("accept-1"))
            self.assertEqual(refused, {})
            c.sendmail("", ["c@example.net"], "Subject: no ids\r\n\r\nhello\r\n")
        # The stats file is rewritten every second: poll it.
        deadline = time.time() + TIMEOUT
        stats = {}
        while time.time() < deadline:
            try:
                with open(s.path("stats.json")) as f:
                    stats = json.load(f)
            except (OSError, ValueError):
                pass
            if stats.get("messages") == 2:
                break
            time.sleep(0.1)
        self.assertEqual(stats.get("messages"), 2, stats)
        self.assertEqual(stats["recipients"], 3)

        summary = s.stop()
        self.assertEqual(summary["connections"], 1)
        self.assertEqual(summary["messages"], 2)
        self.assertEqual(summary["recipients"], 3)
        self.assertEqual(summary["rejected_recipients"], 0)
        self.assertGreater(summary["bytes"], 1500)

        lines = s.jsonl()
        self.assertEqual([l["recipient"] for l in lines], ["a@example.net", "b@example.org", "c@example.net"])
        first = lines[0]
        self.assertEqual(first["client"], "127.0.0.1")
        self.assertEqual(first["sender"], "sender@example.com")
        self.assertEqual(first["message_id"], "<accept-1@it.test>")
        self.assertEqual(first["test"], "accept-1")
        self.assertGreater(first["size"], 1500)
        self.assertRegex(first["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(lines[2]["sender"], "")
        self.assertIsNone(lines[2]["message_id"])
        self.assertIsNone(lines[2]["test"])

    def test_unknown_users_get_550(self):
        s = self.sink("--unknown-users", "nouser.*", "--jsonl", "received.jsonl")
        with s.smtp() as c:
            c.ehlo("client.test")
            self.assertEqual(c.mail("sender@example.com")[0], 250)
            code, text = c.rcpt("nouser1@example.net")
            self.assertEqual(code, 550)
            self.assertEqual(text.decode(), "5.1.1 <nouser1@example.net>: Recipient address rejected: User unknown")
            self.assertEqual(c.rcpt("alice@example.net")[0], 250)
            self.assertEqual(c.data(message("known"))[0], 250)
        summary = s.stop()
        self.assertEqual(summary["rejected_recipients"], 1)
        self.assertEqual(summary["rejected"]["unknown_user"], 1)
        self.assertEqual([l["recipient"] for l in s.jsonl()], ["alice@example.net"])

    def test_greylisting_refuses_first_attempt_and_accepts_after_the_period(self):
        s = self.sink("--greylist", "1s")
        with s.smtp() as c:
            c.ehlo("client.test")
            c.mail("sender@example.com")
            code, text = c.rcpt("grey@example.net")
            self.assertEqual(code, 450)
            self.assertRegex(text.decode(), r"^4\.7\.1 Greylisted, try again in 1 seconds$")
            # Too early: still greylisted.
            code, _ = c.rcpt("grey@example.net")
            self.assertEqual(code, 450)
            c.rset()
        time.sleep(1.2)
        with s.smtp() as c:
            self.assertEqual(c.sendmail("sender@example.com", ["grey@example.net"], message("grey")), {})
            # A new triple (other sender) is greylisted on its own.
            with self.assertRaises(smtplib.SMTPRecipientsRefused):
                c.sendmail("other@example.com", ["grey@example.net"], message("grey2"))
        summary = s.stop()
        self.assertEqual(summary["messages"], 1)
        self.assertEqual(summary["rejected"]["greylisted"], 3)

    def test_connections_over_the_per_ip_limit_get_421(self):
        s = self.sink("--max-connections-per-ip", "2")
        first, second = s.smtp(), s.smtp()
        try:
            with self.assertRaises(smtplib.SMTPConnectError) as refused:
                s.smtp()
            self.assertEqual(refused.exception.smtp_code, 421)
            self.assertIn(b"4.7.0 Too many connections from 127.0.0.1", refused.exception.smtp_error)
            # The two admitted connections work.
            self.assertEqual(first.sendmail("s@example.com", ["r@example.net"], message("c1")), {})
        finally:
            first.quit()
            second.quit()
        # Their slots are free again (the sink notices closes asynchronously).
        deadline = time.time() + TIMEOUT
        while True:
            try:
                with s.smtp() as c:
                    c.noop()
                break
            except smtplib.SMTPConnectError:
                self.assertLess(time.time(), deadline, "slot never freed")
                time.sleep(0.05)
        summary = s.stop()
        self.assertGreaterEqual(summary["refused_connections"], 1)

    def test_rate_limit_answers_450_over_the_rate(self):
        s = self.sink("--rate-per-ip", "3")
        with s.smtp() as c:
            for i in range(3):
                self.assertEqual(c.sendmail("s@example.com", ["r@example.net"], message(f"rate{i}")), {})
            with self.assertRaises(smtplib.SMTPSenderRefused) as refused:
                c.sendmail("s@example.com", ["r@example.net"], message("rate3"))
            self.assertEqual(refused.exception.smtp_code, 450)
            self.assertEqual(refused.exception.smtp_error, b"4.7.1 Rate limit exceeded, try again later")
            self.assertEqual(c.noop()[0], 250)  # 450 keeps the connection
        summary = s.stop()
        self.assertEqual(summary["messages"], 3)
        self.assertEqual(summary["rate_limited"], 1)

    def test_rate_limit_421_variant_closes(self):
        s = self.sink("--rate-per-ip", "1", "--rate-reply", "421 4.7.0 Slow down")
        c = s.smtp()
        c.sendmail("s@example.com", ["r@example.net"], message("r421"))
        code, text = c.mail("s@example.com")
        self.assertEqual((code, text), (421, b"4.7.0 Slow down"))
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            c.noop()
        s.stop()

    def test_max_messages_per_connection(self):
        s = self.sink("--max-messages-per-connection", "2")
        c = s.smtp()
        for i in range(2):
            self.assertEqual(c.sendmail("s@example.com", ["r@example.net"], message(f"m{i}")), {})
        code, text = c.mail("s@example.com")
        self.assertEqual(code, 421)
        self.assertTrue(text.startswith(b"4.7.0 "), text)
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            c.noop()
        self.assertEqual(s.stop()["messages"], 2)

    def test_tempfail_rate_is_deterministic_with_the_seed(self):
        def run():
            s = self.sink("--tempfail-rate", "0.5", "--seed", "11")
            codes = []
            with s.smtp() as c:
                c.ehlo("client.test")
                c.mail("s@example.com")
                for i in range(40):
                    code, text = c.rcpt(f"r{i}@example.net")
                    codes.append(code)
                    if code != 250:
                        self.assertEqual((code, text), (451, b"4.3.0 Temporary failure (injected)"))
                c.rset()
            summary = s.stop()
            self.assertEqual(summary["rejected"]["tempfail"], codes.count(451))
            return codes
        first, second = run(), run()
        self.assertEqual(first, second)
        self.assertGreater(first.count(451), 5)
        self.assertGreater(first.count(250), 5)

    def test_blackhole_accepts_tcp_and_never_answers(self):
        s = self.sink("--blackhole")
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT)
        try:
            sock.settimeout(1.0)
            with self.assertRaises(socket.timeout):
                data = sock.recv(1)
                self.fail(f"got {data!r} from a blackhole")
            sock.sendall(b"EHLO client.test\r\n")
            with self.assertRaises(socket.timeout):
                sock.recv(1)
        finally:
            sock.close()
        self.assertEqual(s.stop()["messages"], 0)

    def test_exit_after_n_messages(self):
        s = self.sink("--exit-after", "3", "--jsonl", "received.jsonl")
        with s.smtp() as c:
            for i in range(3):
                self.assertEqual(c.sendmail("s@example.com", ["r@example.net"], message(f"e{i}")), {})
            try:
                c.quit()
            except smtplib.SMTPServerDisconnected:
                pass  # the sink may already be gone
        code, lines = s.wait_exit()
        self.assertEqual(code, 0, s.read_stderr())
        summary = json.loads(lines[-1])
        self.assertEqual(summary["messages"], 3)
        self.assertEqual(len(s.jsonl()), 3)  # flushed before exit

    def test_summary_on_sigterm_and_sigint(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            s = self.sink()
            with s.smtp() as c:
                c.sendmail("s@example.com", ["a@example.net", "b@example.net"], message("sig"))
            s.proc.send_signal(sig)
            code, lines = s.wait_exit()
            self.assertEqual(code, 0)
            summary = json.loads(lines[-1])
            for key in ("connections", "messages", "recipients", "rejected_recipients", "bytes"):
                self.assertIn(key, summary)
            self.assertEqual((summary["messages"], summary["recipients"]), (1, 2))

    def test_banner_and_reply_delays(self):
        s = self.sink("--banner-delay", "300ms", "--reply-delay", "200ms")
        start = time.time()
        c = s.smtp()
        self.assertGreaterEqual(time.time() - start, 0.3)
        start = time.time()
        self.assertEqual(c.noop()[0], 250)
        self.assertGreaterEqual(time.time() - start, 0.2)
        c.quit()
        s.stop()

    def test_max_message_size(self):
        s = self.sink("--max-message-size", "2KB")
        with s.smtp() as c:
            # smtplib declares the size (RFC 1870 SIZE=): refused at MAIL.
            with self.assertRaises(smtplib.SMTPSenderRefused) as too_big:
                c.sendmail("s@example.com", ["r@example.net"], message("big", body_lines=100))
            self.assertEqual(too_big.exception.smtp_code, 552)
            # Undeclared: refused after the data.
            c.ehlo("client.test")
            self.assertEqual(c.mail("s@example.com")[0], 250)
            self.assertEqual(c.rcpt("r@example.net")[0], 250)
            code, text = c.data(message("big", body_lines=100))
            self.assertEqual(code, 552)
            self.assertTrue(text.startswith(b"5.3.4 "), text)
            self.assertEqual(c.sendmail("s@example.com", ["r@example.net"], message("small", body_lines=2)), {})
        self.assertEqual(s.stop()["messages"], 1)

    def test_bad_flag_value_is_a_usage_error(self):
        out = subprocess.run([BIN, "sink", "--greylist", "soon"], capture_output=True, timeout=TIMEOUT)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(b"--greylist", out.stderr + out.stdout)


if __name__ == "__main__":
    main()
