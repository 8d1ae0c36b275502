"""`hikyaku sendmail` as PHP's mail() uses it (sendmail_path = "hikyaku sendmail -t -i")."""
import subprocess
import unittest

import harness

MESSAGE = (b"To: Bob <bob@example.net>, carol@example.org\n"
           b"Cc: \"Dan, the man\" <dan@example.com>\n"
           b"Bcc: secret@example.com\n"
           b"Subject: order 42\n"
           b"\n"
           b"Thank you for your order.\n"
           b".\n"
           b"This line comes after a lone dot and must survive with -i.\n")


def sendmail(d, args, stdin):
    return subprocess.run([harness.BIN, "sendmail", "-C", d.client_config()] + args, input=stdin,
                          capture_output=True, timeout=30, cwd=d.root)


class SendmailTest(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon()
        self.d.start()

    def tearDown(self):
        self.d.cleanup()

    def test_dash_t_reads_recipients_from_headers_and_hides_bcc(self):
        r = sendmail(self.d, ["-t", "-i", "-f", "shop@example.com"], MESSAGE)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.d.stop()
        records = self.d.spool_list()
        self.assertEqual(sorted(x["recipient"] for x in records),
                         ["bob@example.net", "carol@example.org", "dan@example.com", "secret@example.com"])
        self.assertEqual({x["sender"] for x in records}, {"shop@example.com"})
        self.assertTrue(records[0]["message_id"].endswith("@mta.test.example>"))  # added when missing
        events = [e for e in self.d.events() if e["type"] == "received"]
        self.assertEqual(len(events), 4)

    def test_message_content_keeps_lone_dot_with_i_and_drops_bcc_header(self):
        r = sendmail(self.d, ["-t", "-i"], MESSAGE)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.d.stop()
        out = subprocess.run([harness.BIN, "spool", "list", "-c", self.d.config_path], capture_output=True,
                             cwd=self.d.root)
        self.assertEqual(out.returncode, 0)
        records = self.d.spool_list()
        self.assertGreater(records[0]["size"], len(MESSAGE) - 20)  # body after the lone dot kept

    def test_recipient_arguments_without_t(self):
        r = sendmail(self.d, ["-oi", "x@example.net"], b"Subject: hi\n\nbody\n")
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.d.stop()
        self.assertEqual([x["recipient"] for x in self.d.spool_list()], ["x@example.net"])

    def test_no_recipients_is_a_usage_error(self):
        r = sendmail(self.d, [], b"Subject: hi\n\nbody\n")
        self.assertEqual(r.returncode, 64)
        self.assertIn("no recipients", r.stderr.decode())

    def test_daemon_down_is_a_temporary_failure(self):
        self.d.stop()
        r = sendmail(self.d, ["x@example.net"], b"Subject: hi\n\nbody\n")
        self.assertEqual(r.returncode, 75, r.stderr.decode())
        self.assertIn("cannot reach", r.stderr.decode())


if __name__ == "__main__":
    harness.main()
