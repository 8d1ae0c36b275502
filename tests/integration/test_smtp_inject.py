"""SMTP injection against a real daemon: extensions, durable 250, limits,
relay protection, STARTTLS + AUTH, many concurrent pipelining clients."""
import os
import smtplib
import ssl
import subprocess
import threading
import unittest

import harness


class SmtpInjectTest(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon()
        self.d.start()

    def tearDown(self):
        self.d.cleanup()

    def test_ehlo_advertises_extensions_and_message_is_stored_once_with_events(self):
        c = harness.SmtpClient(self.d.smtp_port)
        code, banner = c.read_reply()
        self.assertEqual(code, 220)
        self.assertIn("mta.test.example", banner)
        code, ehlo = c.command("EHLO client.test")
        self.assertEqual(code, 250)
        for ext in ("PIPELINING", "SIZE 1048576", "8BITMIME", "ENHANCEDSTATUSCODES"):
            self.assertIn(ext, ehlo)
        self.assertNotIn("STARTTLS", ehlo)  # no certificate configured
        self.assertEqual(c.command("MAIL FROM:<alice@example.com> SIZE=500")[0], 250)
        self.assertEqual(c.command("RCPT TO:<bob@example.net>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<carol@example.org>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(harness.dot_stuff(harness.make_message("first")) + b"\r\n.\r\n")
        code, text = c.read_reply()
        self.assertEqual(code, 250)
        self.assertIn("2.0.0", text)
        queue_id = text.split()[-1]
        self.assertEqual(c.command("QUIT")[0], 221)
        c.close()

        stats = self.d.stats()
        self.assertEqual(stats["intake"]["accepted"], 1)
        self.assertEqual(self.d.stop(), 0)
        events = [e for e in self.d.events() if e["type"] == "received"]
        self.assertEqual(sorted(e["recipient"] for e in events), ["bob@example.net", "carol@example.org"])
        for e in events:
            self.assertEqual(e["sender"], "alice@example.com")
            self.assertEqual(e["id"], queue_id)
            self.assertTrue(e["ts"].endswith("Z"))
        records = self.d.spool_list()
        self.assertEqual(len(records), 2)
        self.assertEqual({r["id"] for r in records}, {queue_id})
        self.assertEqual(records[0]["message_id"], "<first@it.test>")

    def test_oversized_message_is_refused_and_not_stored(self):
        c = harness.SmtpClient(self.d.smtp_port)
        c.read_reply()
        c.command("EHLO client.test")
        code, text = c.command("MAIL FROM:<a@example.com> SIZE=2000000")
        self.assertEqual(code, 552)
        self.assertIn("5.3.4", text)
        self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<b@example.net>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(harness.make_message("big", size=1_200_000) + b"\r\n.\r\n")
        code, text = c.read_reply()
        self.assertEqual(code, 552)
        self.assertIn("5.3.4", text)
        # The session stays usable after the refusal.
        self.assertEqual(c.command("RSET")[0], 250)
        c.close()
        self.d.stop()
        self.assertEqual(self.d.spool_list(), [])

    def test_many_concurrent_pipelining_connections(self):
        errors = []
        acked = []

        def client(i):
            try:
                c = harness.SmtpClient(self.d.smtp_port)
                c.read_reply()
                c.command(f"EHLO c{i}.test")
                for n in range(20):
                    c.send(f"MAIL FROM:<s{i}@example.com>\r\nRCPT TO:<r{i}-{n}@example.net>\r\nDATA\r\n")
                    assert [c.read_reply()[0] for _ in range(3)] == [250, 250, 354]
                    c.send(harness.make_message(f"p{i}-{n}") + b"\r\n.\r\n")
                    assert c.read_reply()[0] == 250
                    acked.append(1)
                c.command("QUIT")
                c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(errors, [])
        self.assertEqual(len(acked), 4000)
        stats = self.d.stats()
        self.assertEqual(stats["intake"]["accepted"], 4000)
        # Group commit: far fewer WAL syncs than messages.
        self.assertLess(stats["spool"]["syncs"], 4000)

    def test_client_outside_relay_networks_is_refused_without_auth(self):
        self.d.cleanup()
        self.d = harness.Daemon(extra="")
        with open(self.d.config_path) as f:
            text = f.read().replace('relay_networks = ["127.0.0.0/8"]', 'relay_networks = ["10.0.0.0/8"]')
        with open(self.d.config_path, "w") as f:
            f.write(text)
        self.d.start()
        c = harness.SmtpClient(self.d.smtp_port)
        c.read_reply()
        c.command("EHLO outsider.test")
        self.assertEqual(c.command("MAIL FROM:<spammer@example.com>")[0], 250)
        code, text = c.command("RCPT TO:<victim@example.net>")
        self.assertEqual(code, 554)
        self.assertIn("5.7.1", text)
        c.close()

    def test_too_many_connections_get_421(self):
        self.d.cleanup()
        self.d = harness.Daemon(extra="")
        with open(self.d.config_path) as f:
            text = f.read().replace('max_message_size = "1MB"', 'max_message_size = "1MB"\nmax_connections = 2')
        with open(self.d.config_path, "w") as f:
            f.write(text)
        self.d.start()
        a, b = harness.SmtpClient(self.d.smtp_port), harness.SmtpClient(self.d.smtp_port)
        self.assertEqual(a.read_reply()[0], 220)
        self.assertEqual(b.read_reply()[0], 220)
        c = harness.SmtpClient(self.d.smtp_port)
        code, text = c.read_reply()
        self.assertEqual(code, 421)
        self.assertIn("4.7.0", text)


class StartTlsAuthTest(unittest.TestCase):
    """A client outside relay_networks authenticates over STARTTLS."""

    def setUp(self):
        self.d = harness.Daemon()
        root = self.d.root
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=mta.test.example", "-keyout", f"{root}/key.pem", "-out", f"{root}/cert.pem"],
                       check=True, capture_output=True)
        hashed = subprocess.run([harness.BIN, "hash-password"], input=b"s3cret\n", capture_output=True,
                                check=True).stdout.decode().strip()
        extra = f"""
[tls.main]
certificate = "{root}/cert.pem"
key = "{root}/key.pem"

[[tenant]]
name = "acme"

[[tenant]]
name = "other"
"""
        text = harness.default_config(root, extra).replace(
            'relay_networks = ["127.0.0.0/8"]',
            f'relay_networks = ["10.0.0.0/8"]\ntls = "main"\nusers = [{{ name = "shop", password_hash = "{hashed}", tenant = "acme" }}]')
        with open(self.d.config_path, "w") as f:
            f.write(text)
        self.d.start()

    def tearDown(self):
        self.d.cleanup()

    def _client(self):
        s = smtplib.SMTP("127.0.0.1", self.d.smtp_port, timeout=20)
        s.ehlo("client.test")
        self.assertTrue(s.has_extn("starttls"))
        self.assertFalse(s.has_extn("auth"), "AUTH must not be offered before TLS")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s.starttls(context=ctx)
        s.ehlo("client.test")
        self.assertIn("PLAIN", s.esmtp_features.get("auth", ""))
        return s

    def test_auth_plain_over_tls_allows_relaying(self):
        s = self._client()
        s.login("shop", "s3cret")
        refused = s.sendmail("shop@example.com", ["customer@example.net"], harness.make_message("tls"))
        self.assertEqual(refused, {})
        s.quit()
        self.assertEqual(self.d.stats()["intake"]["accepted"], 1)

    def test_the_users_tenant_is_the_mails_and_its_header_cannot_change_it(self):
        # The client is outside relay_networks: its X-Hikyaku-Tenant does not
        # count (and is removed); the mail is the user's tenant's.
        s = self._client()
        s.login("shop", "s3cret")
        refused = s.sendmail("shop@example.com", ["customer@example.net"],
                             b"X-Hikyaku-Tenant: other\r\n" + harness.make_message("tenant"))
        self.assertEqual(refused, {})
        s.quit()
        received = harness.wait_for(lambda: [e for e in self.d.events() if e["type"] == "received"], 10)
        self.assertEqual([e.get("tenant") for e in received], ["acme"])

    def test_wrong_password_is_refused_with_535(self):
        s = self._client()
        with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
            s.login("shop", "wrong")
        self.assertEqual(e.exception.smtp_code, 535)
        s.close()


if __name__ == "__main__":
    harness.main()
