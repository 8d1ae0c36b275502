"""Disk full: injection answers 452 4.3.1 (SMTP) / 507 (HTTP); nothing already
accepted is harmed; injection recovers once space returns.

The spool lives on a small tmpfs mounted by the test (needs root, as CI has).
"""
import json
import os
import subprocess
import tempfile
import unittest

import harness


def can_mount():
    return os.geteuid() == 0


@unittest.skipUnless(can_mount(), "needs root to mount a small tmpfs")
class DiskFullTest(unittest.TestCase):
    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="hikyaku-full-")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", self.mnt], check=True)
        self.d = harness.Daemon()
        text = harness.default_config(self.d.root).replace(f'path = "{self.d.root}/spool"',
                                                           f'path = "{self.mnt}/spool"\nmemtable_size = "4MB"')
        with open(self.d.config_path, "w") as f:
            f.write(text)

    def tearDown(self):
        self.d.cleanup()
        subprocess.run(["umount", "-l", self.mnt], check=False)
        os.rmdir(self.mnt)

    def send(self, c, tag, size):
        c.send(f"MAIL FROM:<s@example.com>\r\nRCPT TO:<r-{tag}@example.net>\r\nDATA\r\n")
        replies = [c.read_reply()[0] for _ in range(3)]
        if replies[2] != 354:
            return replies[2], ""
        c.send(harness.make_message(tag, size=size, incompressible=True) + b"\r\n.\r\n")
        return c.read_reply()

    def test_full_disk_refuses_with_452_and_keeps_accepted_mail(self):
        self.d.start()
        c = harness.SmtpClient(self.d.smtp_port)
        c.read_reply()
        c.command("EHLO full.test")
        acked, refusal = [], None
        for n in range(400):
            code, text = self.send(c, f"m{n}", 500_000)
            if code == 250:
                acked.append(f"m{n}")
                continue
            refusal = (code, text)
            break
        self.assertIsNotNone(refusal, "the disk never filled up")
        self.assertEqual(refusal[0], 452, refusal)
        self.assertIn("4.3.1", refusal[1])
        self.assertGreater(len(acked), 5)
        # The HTTP API says 507 while the disk is full.
        status, body, ctype = self.d.http("POST", "/api/v1/messages", json.dumps(
            {"from": "s@example.com", "to": ["h@example.net"], "raw": "Subject: x\r\n\r\n" + harness.make_message("h", 400_000, incompressible=True).decode()}))
        self.assertEqual(status, 507, body)
        self.assertEqual(ctype, "application/problem+json")
        c.close()
        self.d.kill()

        # Free space (as an operator would) and restart: every acknowledged message is there.
        filler = [f for f in os.listdir(self.mnt) if f != "spool"]
        for f in filler:
            os.remove(os.path.join(self.mnt, f))
        subprocess.run(["mount", "-o", "remount,size=256m", self.mnt], check=True)
        stored = {r["message_id"].strip("<>").split("@")[0] for r in self.d.spool_list()}
        self.assertEqual(set(acked) - stored, set())
        self.d.start()
        c = harness.SmtpClient(self.d.smtp_port)
        c.read_reply()
        c.command("EHLO full.test")
        self.assertEqual(self.send(c, "after", 1000)[0], 250)
        c.close()

    def test_injection_recovers_by_itself_when_space_returns(self):
        self.d.start()
        c = harness.SmtpClient(self.d.smtp_port)
        c.read_reply()
        c.command("EHLO full.test")
        code = 250
        for n in range(400):
            code, _ = self.send(c, f"m{n}", 500_000)
            if code != 250:
                break
        self.assertEqual(code, 452)
        subprocess.run(["mount", "-o", "remount,size=256m", self.mnt], check=True)
        # The spool retries on its own (rate-limited); a client retrying later succeeds.
        import time
        deadline = time.time() + 15
        while time.time() < deadline:
            code, _ = self.send(c, "retry", 1000)
            if code == 250:
                break
            time.sleep(0.5)
        self.assertEqual(code, 250)
        c.close()


if __name__ == "__main__":
    harness.main()
