"""A broken configuration stops hikyaku loudly: every error, with its place, exit 78."""
import os
import socket
import subprocess
import tempfile
import unittest

import harness

BROKEN = """[server]
hostname = "mta.example.com"
[spool]
sync = "sometimes"
[smtp_in]
listen = ["127.0.0.1:2525"]
relay_networks = ["127.0.0.0/33"]
command_timeout = "5 minutes"
tls = "missing"
colour = "blue"
"""


class ConfigCliTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hikyaku-cfg-")
        self.path = os.path.join(self.dir, "broken.toml")
        with open(self.path, "w") as f:
            f.write(BROKEN)

    def test_config_check_reports_all_errors_with_positions(self):
        r = subprocess.run([harness.BIN, "config", "check", "-c", self.path], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 78)
        err = r.stderr.decode()
        for line, key in [(4, "spool.sync"), (7, "smtp_in.relay_networks"), (8, "smtp_in.command_timeout"),
                          (9, "smtp_in.tls"), (10, "smtp_in.colour")]:
            self.assertRegex(err, rf"{self.path}:{line}:\d+: {key}[\[\].\d]*: ", err)

    def test_serve_refuses_to_start_on_a_broken_config(self):
        r = subprocess.run([harness.BIN, "serve", "-c", self.path], capture_output=True, timeout=30, cwd=self.dir)
        self.assertEqual(r.returncode, 78)
        self.assertNotIn(b"hikyaku ready", r.stdout)

    def test_shipped_default_config_is_valid(self):
        etc = os.path.join(os.path.dirname(__file__), "../../etc/hikyaku.toml")
        r = subprocess.run([harness.BIN, "config", "check", "-c", etc], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr.decode())

    def test_port_in_use_stops_the_daemon_before_it_answers(self):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        d = harness.Daemon()
        try:
            text = harness.default_config(d.root).replace('listen = ["127.0.0.1:0"]', f'listen = ["127.0.0.1:{port}"]')
            with open(d.config_path, "w") as f:
                f.write(text)
            r = subprocess.run([harness.BIN, "serve", "-c", d.config_path], capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 71)
            self.assertIn("cannot listen", r.stderr.decode())
        finally:
            busy.close()
            d.cleanup()


if __name__ == "__main__":
    harness.main()
