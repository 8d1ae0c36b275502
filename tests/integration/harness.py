"""Test harness: runs real hikyaku daemons on 127.0.0.1 with port 0.

Every test builds its own temporary directory (spool, events, config), starts
`hikyaku serve`, reads the ready line for the bound ports, and stops the
daemon at the end. Nothing here talks to anything but loopback.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

BIN = os.environ.get("HIKYAKU_BIN", os.path.join(os.path.dirname(__file__), "../../build/ci/src/app/hikyaku"))


def default_config(root, extra="", hold=True):
    # Injection tests hold delivery: mail stays in the spool for inspection.
    hold_text = "\n[delivery]\nhold = true\n" if hold else ""
    return f"""
[server]
hostname = "mta.test.example"

[spool]
path = "{root}/spool"
sync = "group"

[smtp_in]
listen = ["127.0.0.1:0"]
relay_networks = ["127.0.0.0/8"]
max_message_size = "1MB"

[http]
listen = "127.0.0.1:0"

[events]
path = "{root}/events.jsonl"
{hold_text}{extra}
"""


class Daemon:
    """One `hikyaku serve` process on a private directory."""

    def __init__(self, root=None, config_text=None, extra=""):
        self.root = root or tempfile.mkdtemp(prefix="hikyaku-it-")
        self.config_path = os.path.join(self.root, "hikyaku.toml")
        with open(self.config_path, "w") as f:
            f.write(config_text if config_text is not None else default_config(self.root, extra))
        self.proc = None
        self.smtp_port = None
        self.http_port = None
        self.ready_line = ""

    def start(self, timeout=30):
        self.stderr = open(os.path.join(self.root, "daemon.stderr"), "ab")
        self.proc = subprocess.Popen([BIN, "serve", "-c", self.config_path], stdout=subprocess.PIPE,
                                     stderr=self.stderr, cwd=self.root)
        deadline = time.time() + timeout
        line = b""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith(b"hikyaku ready"):
                self.ready_line = line.decode()
                m = re.search(r"smtp=127\.0\.0\.1:(\d+)", self.ready_line)
                self.smtp_port = int(m.group(1))
                self.http_port = int(re.search(r"http=127\.0\.0\.1:(\d+)", self.ready_line).group(1))
                return self
        self.proc.kill()
        raise RuntimeError(f"daemon did not become ready: {line!r}; stderr: {self.read_stderr()}")

    def read_stderr(self):
        with open(os.path.join(self.root, "daemon.stderr"), "rb") as f:
            return f.read().decode(errors="replace")

    def recovered(self):
        m = re.search(r"recovered_messages=(\d+) recovered_recipients=(\d+)", self.ready_line)
        return int(m.group(1)), int(m.group(2))

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("daemon did not stop within 15 s of SIGTERM")
        return self.proc.returncode if self.proc else None

    def http(self, method, path, body=None, content_type="application/json"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", method=method,
                                     data=body.encode() if isinstance(body, str) else body,
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode(), resp.headers.get("Content-Type")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), e.headers.get("Content-Type")

    def client_config(self):
        """A copy of the config whose smtp_in.listen names the bound port (for `hikyaku sendmail`)."""
        path = os.path.join(self.root, "client.toml")
        with open(self.config_path) as f:
            text = f.read().replace('listen = ["127.0.0.1:0"]', f'listen = ["127.0.0.1:{self.smtp_port}"]')
            text = text.replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{self.http_port}"')
        with open(path, "w") as f:
            f.write(text)
        return path

    def stats(self):
        status, body, _ = self.http("GET", "/api/v1/stats")
        assert status == 200, body
        return json.loads(body)

    def spool_list(self):
        """Pending recipients as stored, read by `hikyaku spool list` (daemon stopped)."""
        out = subprocess.run([BIN, "spool", "list", "-c", self.config_path], capture_output=True, timeout=60,
                             cwd=self.root)
        assert out.returncode == 0, out.stderr.decode()
        return [json.loads(l) for l in out.stdout.decode().splitlines() if l.strip()]

    def events(self):
        path = os.path.join(self.root, "events.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


class SmtpClient:
    """A raw SMTP client that can pipeline (RFC 2920) and see every reply."""

    def __init__(self, port, host="127.0.0.1", timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def read_reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed; got " + repr(lines))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if len(line) < 4 or line[3:4] == b" ":
                return int(lines[-1][:3]), "\n".join(lines)

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def command(self, line):
        self.send(line + "\r\n")
        return self.read_reply()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def dot_stuff(body):
    return b"\r\n".join((b"." + l if l.startswith(b".") else l) for l in body.split(b"\r\n"))


def make_message(tag, size=1000, sender="sender@example.com", rcpt="rcpt@example.net", incompressible=False):
    if incompressible:  # base64 of random bytes: what attachments look like, and what zstd cannot shrink much
        import base64
        raw = base64.b64encode(os.urandom(size * 3 // 4)).decode()
        filler = "\r\n".join(raw[i:i + 76] for i in range(0, len(raw), 76)) + "\r\n"
    else:
        filler = ("x" * 70 + "\r\n") * max(1, size // 72)
    return (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: test {tag}\r\nMessage-ID: <{tag}@it.test>\r\n\r\n"
            f".leading dot line\r\n{filler}").encode()


def main():
    """Runs the unittest cases of the calling module; prints a plain summary line."""
    result = unittest.main(module="__main__", exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed, {len(result.skipped)} skipped")
    sys.exit(1 if failed else 0)


class Sink:
    """One `hikyaku sink` process: a receiver on 127.0.0.1 that counts, logs
    one JSON line per accepted recipient, and can play a difficult receiver."""

    def __init__(self, root, name, *flags):
        self.root = root
        self.jsonl = os.path.join(root, f"{name}.jsonl")
        self.stats_file = os.path.join(root, f"{name}.stats.json")
        self.stderr = open(os.path.join(root, f"{name}.stderr"), "ab")
        self.proc = subprocess.Popen([BIN, "sink", "--listen", "127.0.0.1:0", "--jsonl", self.jsonl,
                                      "--stats-file", self.stats_file, *flags],
                                     stdout=subprocess.PIPE, stderr=self.stderr)
        line = self.proc.stdout.readline().decode()
        m = re.search(r"listen=127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"sink did not start: {line!r}")
        self.port = int(m.group(1))

    def records(self):
        if not os.path.exists(self.jsonl):
            return []
        with open(self.jsonl) as f:
            return [json.loads(l) for l in f if l.strip().endswith("}")]

    def stats(self):
        try:
            with open(self.stats_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def delivery_config(root, routes, extra=""):
    """A daemon config whose [[route]]s send each domain to a sink port."""
    route_text = "".join(f'\n[[route]]\ndomain = "{d}"\nto = "127.0.0.1:{p}"\n' for d, p in routes.items())
    return default_config(root, extra, hold=False) + route_text


def wait_for(predicate, timeout, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def inject(port, messages, connections=8):
    """Sends (sender, [recipients], tag) tuples over pipelining connections; returns acked tags."""
    import threading
    acked, errors = [], []
    chunks = [messages[i::connections] for i in range(connections)]

    def worker(chunk):
        try:
            c = SmtpClient(port)
            c.read_reply()
            c.command("EHLO inject.test")
            for sender, rcpts, tag in chunk:
                c.send(f"MAIL FROM:<{sender}>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts) + "DATA\r\n")
                codes = [c.read_reply()[0] for _ in range(len(rcpts) + 2)]
                assert codes[-1] == 354, codes
                c.send(make_message(tag, size=1500) + b"\r\n.\r\n")
                code, text = c.read_reply()
                assert code == 250, text
                acked.append(tag)
            c.command("QUIT")
            c.close()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(ch,)) for ch in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return acked, errors


def delivery_config_with_sites(root, routes, extra=""):
    """delivery_config, where a route's value may be (port, site): a route to
    an IP literal has no MX name to match, so the route names the site."""
    text = delivery_config(root, {d: (p[0] if isinstance(p, tuple) else p) for d, p in routes.items()}, extra)
    for p in routes.values():
        if isinstance(p, tuple):
            text = text.replace(f'to = "127.0.0.1:{p[0]}"\n', f'to = "127.0.0.1:{p[0]}"\nsite = "{p[1]}"\n')
    return text


class DeliveryCase(unittest.TestCase):
    """A daemon on a private directory delivering to `hikyaku sink`s, all
    cleaned up after each test."""

    def setUp(self):
        self.d = Daemon()
        self.sinks = []

    def tearDown(self):
        for s in self.sinks:
            s.stop()
        self.d.cleanup()

    def sink(self, name, *flags):
        s = Sink(self.d.root, name, *flags)
        self.sinks.append(s)
        return s

    def write_config(self, routes, extra=""):
        """routes: domain -> port, or -> (port, site)."""
        with open(self.d.config_path, "w") as f:
            f.write(delivery_config_with_sites(self.d.root, routes, extra))

    def start(self, routes=None, extra=""):
        """Writes the config (unless routes is None: keep the file) and starts
        the daemon; the CLI's config (naming the bound ports) is taken now,
        so a test may break the daemon's file and still reach it."""
        if routes is not None:
            self.write_config(routes, extra)
        self.d.start()
        self.client = self.d.client_config()

    def events(self, type_):
        return [e for e in self.d.events() if e["type"] == type_]

    def wait_events(self, type_, n, timeout=10):
        """The events of a type once there are at least n (written asynchronously)."""
        wait_for(lambda: len(self.events(type_)) >= n, timeout)
        return self.events(type_)

    def inject(self, n, domain, tag="m", connections=4):
        """n one-recipient messages to <tag><i>@<domain>; asserts every one was acknowledged."""
        messages = [("s@example.com", [f"{tag}{i}@{domain}"], f"{tag}{i}") for i in range(n)]
        acked, errors = inject(self.d.smtp_port, messages, connections=connections)
        self.assertEqual(errors, [])
        self.assertEqual(len(acked), n)

    def cli(self, *args):
        """Runs `hikyaku ARGS -c <client config>` against the daemon start() started."""
        out = subprocess.run([BIN, *args, "-c", self.client], capture_output=True, timeout=30)
        return out.returncode, out.stdout.decode(), out.stderr.decode()
