#!/usr/bin/env python3
"""Fairness benchmark (issue 11): does a tenant's password reset wait behind
another tenant's newsletter?

Called by bench/fairness.sh (see docs/BENCHMARKS.md, "Fairness (issue
11)"). Python 3 standard library and Postfix's smtp-source.

One receiver, `hikyaku sink` on 127.0.0.61, is a site hikyaku may send to at
--rate messages a second (`max_message_rate_per_source`, one source): the
rate limit of a big receiver, slower than injection, so a newsletter of
--newsletter messages (smtp-source, 20 sessions) builds a backlog. Once the
newsletter is injected and the backlog is at its largest, 50 "password
resets" are injected one every 100 ms over their own SMTP connection, each
to its own recipient, and their latency is measured: from the moment
hikyaku acknowledged the DATA (250) to the sink's timestamp for that
recipient (same machine, same clock).

Scenarios, each on a fresh daemon, spool and sink:
  fifo      newsletter and resets without a tenant: one flow, first come
            first served -- the control, what a queue without fairness does
  tenant    newsletter X-Hikyaku-Tenant: news, resets X-Hikyaku-Tenant:
            acme, both weight 1: the site lane serves the two tenants by
            weighted round robin (queue/flow_table.h)
  priority  resets X-Hikyaku-Tenant: news plus X-Hikyaku-Priority: high:
            the same tenant as the newsletter, served first

Reported per scenario: reset latency p50 / p99 / max, the backlog when the
resets started, the newsletter's delivery rate (fairness must not cost the
newsletter its throughput), wall time. Every wait is bounded; everything
started is stopped in `finally` blocks.
"""

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inject as ib  # noqa: E402  (the system under test)
from inject import BenchError, NoInstrument, WorkDir, log  # noqa: E402

ib.LOG_TAG = "fairness"
REPO = ib.REPO
SINK_ADDRESS = "127.0.0.61"
DOMAIN = "isp.test"
RESETS = 50
RESET_INTERVAL_S = 0.1
SCENARIOS = ("fifo", "tenant", "priority")
HEADERS = {  # scenario -> (newsletter headers, reset headers)
    "fifo": ("", ""),
    "tenant": ("X-Hikyaku-Tenant: news\n", "X-Hikyaku-Tenant: acme\r\n"),
    "priority": ("X-Hikyaku-Tenant: news\n", "X-Hikyaku-Tenant: news\r\nX-Hikyaku-Priority: high\r\n"),
}


class Sink(ib.SinkProcess):
    """A plain `hikyaku sink` that logs one JSON line per recipient."""

    def __init__(self, args, workdir):
        self.jsonl = os.path.join(workdir, "sink.jsonl")
        super().__init__(args.hikyaku, workdir, SINK_ADDRESS, ["--jsonl", self.jsonl])

    def accepted(self):
        return (self.stats() or {}).get("recipients", 0)

    def records(self):
        with open(self.jsonl) as f:
            return [json.loads(line) for line in f if line.strip().endswith("}")]


class HikyakuFair(ib.HikyakuSystem):
    sink_port = None
    rate = None

    def extra_config(self):
        return f"""
[delivery]
starttls = "never"
idle_timeout = "30s"

[[site]]
name = "isp"
mx_patterns = ["*.isp.invalid"]
max_message_rate_per_source = "{self.rate}/s"

[[route]]
domain = "{DOMAIN}"
to = "{SINK_ADDRESS}:{self.sink_port}"
site = "isp"

[[tenant]]
name = "news"

[[tenant]]
name = "acme"
"""


def write_newsletter(path, headers, size):
    body = ("Dear subscriber, this is the weekly newsletter.\n" * (size // 48 + 1))[:size]
    with open(path, "w") as f:
        f.write(headers + "From: News <news@bench.example>\nTo: <subscriber@bench.example>\n"
                "Subject: Weekly newsletter\nMessage-ID: <newsletter@bench.example>\n\n" + body + "\n")


def smtp_reply(sock, buf):
    """Reads one (possibly multi-line) reply; returns (code, rest of buffer)."""
    while True:
        while b"\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise BenchError("connection closed by hikyaku")
            buf += chunk
        line, buf = buf.split(b"\r\n", 1)
        if len(line) < 4 or line[3:4] == b" ":
            return int(line[:3]), buf


def send_reset(port, i, headers):
    """One reset over its own connection; returns the wall-clock time of the 250."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        buf = b""
        code, buf = smtp_reply(s, buf)
        for cmd in ("EHLO app.bench.example", "MAIL FROM:<noreply@acme.example>",
                    f"RCPT TO:<reset{i}@{DOMAIN}>", "DATA"):
            s.sendall(cmd.encode() + b"\r\n")
            code, buf = smtp_reply(s, buf)
            if code >= 400:
                raise BenchError(f"reset {i}: {cmd} answered {code}")
        s.sendall((headers + f"From: <noreply@acme.example>\r\nTo: <reset{i}@{DOMAIN}>\r\n"
                   f"Subject: Your password reset code\r\nMessage-ID: <reset{i}@acme.example>\r\n\r\n"
                   f"Your code is {100000 + i}.\r\n.\r\n").encode())
        code, buf = smtp_reply(s, buf)
        acked = time.time()
        if code != 250:
            raise BenchError(f"reset {i}: DATA answered {code}")
        s.sendall(b"QUIT\r\n")
        return acked


def seconds(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def scenario_trial(kind, args):
    workdir = tempfile.mkdtemp(prefix=f"hikyaku-bench-fair-{kind}-p{os.getpid()}-", dir=args.tmpdir)
    fs = WorkDir(workdir)
    sink = system = None
    try:
        sink = Sink(args, workdir)
        system = HikyakuFair(args, workdir)
        system.sink_port, system.rate = sink.port, args.rate
        port = system.start(fs, NoInstrument(), NoInstrument())
        newsletter_headers, reset_headers = HEADERS[kind]
        message_file = os.path.join(workdir, "newsletter.eml")
        write_newsletter(message_file, newsletter_headers, args.size)
        log(f"{kind}: injecting the newsletter ({args.newsletter} messages)")
        t0 = time.monotonic()
        ib.run(["smtp-source", "-s", "20", "-m", str(args.newsletter), "-d", "-N", "-M", "bench.example",
                "-f", "news@bench.example", "-t", f"subscriber@{DOMAIN}", "-F", message_file,
                f"127.0.0.1:{port}"], timeout=120 + args.newsletter / 500)
        inject_s = time.monotonic() - t0
        backlog = args.newsletter - sink.accepted()
        log(f"{kind}: injected in {inject_s:.1f}s, backlog {backlog}; sending {RESETS} resets")
        acked = {}
        for i in range(RESETS):
            acked[f"reset{i}@{DOMAIN}"] = send_reset(port, i, reset_headers)
            time.sleep(RESET_INTERVAL_S)
        total = args.newsletter + RESETS
        deadline = time.monotonic() + args.newsletter / args.rate * 2 + 120
        while sink.accepted() < total:
            if time.monotonic() > deadline:
                raise BenchError(f"{kind}: {sink.accepted()} of {total} delivered before the deadline")
            if system.proc.poll() is not None:
                raise BenchError(f"hikyaku exited ({system.proc.returncode})")
            time.sleep(0.5)
        wall_s = time.monotonic() - t0
        system.stop()
        system = None
        time.sleep(1.5)  # the sink's last JSON lines
        sink.stop()
        records = sink.records()
        sink = None
        latency = [seconds(r["ts"]) - acked[r["recipient"]] for r in records if r["recipient"] in acked]
        if len(latency) != RESETS:
            raise BenchError(f"{kind}: {len(latency)} of {RESETS} resets reached the sink")
        news = sorted(seconds(r["ts"]) for r in records if r["recipient"] not in acked)
        return {
            "scenario": kind,
            "newsletter": args.newsletter,
            "rate_limit_per_s": args.rate,
            "inject_s": inject_s,
            "backlog_at_resets": backlog,
            "latency_s": sorted(latency),
            "p50_s": statistics.median(latency),
            "p99_s": percentile(latency, 99),
            "max_s": max(latency),
            "newsletter_rate_per_s": (len(news) - 1) / (news[-1] - news[0]) if len(news) > 1 else None,
            "wall_s": wall_s,
        }
    finally:
        if system:
            system.stop()
        if sink:
            sink.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"{kind}: kept {workdir}")


def render(results, meta):
    out = [f"Run {meta['date']} on {meta['host']} ({meta['cpus']} CPUs, load before {meta['loadavg']}); "
           f"command: `{meta['command']}`.", "",
           "| | " + " | ".join(r["scenario"] for r in results) + " |",
           "| --- | " + " | ".join("---" for _ in results) + " |"]

    def row(name, f):
        out.append(f"| {name} | " + " | ".join(f(r) for r in results) + " |")

    row("newsletter messages", lambda r: str(r["newsletter"]))
    row("newsletter injected in", lambda r: f"{r['inject_s']:.1f} s")
    row("backlog when the resets came", lambda r: str(r["backlog_at_resets"]))
    row(f"reset latency p50 / p99 / max ({RESETS} resets)",
        lambda r: f"{r['p50_s']:.2f} / {r['p99_s']:.2f} / {r['max_s']:.2f} s")
    row("newsletter delivered at", lambda r: f"{r['newsletter_rate_per_s']:.0f}/s (limit {r['rate_limit_per_s']}/s)")
    row("wall time", lambda r: f"{r['wall_s']:.0f} s")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--newsletter", type=int, default=200000, help="newsletter messages (one recipient each)")
    ap.add_argument("--rate", type=int, default=2000, help="the site's max_message_rate_per_source, per second")
    ap.add_argument("--size", type=int, default=2000, help="newsletter body bytes")
    ap.add_argument("--only", help="comma-separated scenarios out of " + ",".join(SCENARIOS))
    ap.add_argument("--hikyaku", default=os.path.join(REPO, "build/ci/src/app/hikyaku"))
    ap.add_argument("--tmpdir", default="/var/tmp")
    ap.add_argument("--out", default=os.path.join(REPO, "bench/results"))
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    ap.add_argument("--nice", type=int, default=None)
    args = ap.parse_args()
    kinds = args.only.split(",") if args.only else list(SCENARIOS)
    for k in kinds:
        if k not in SCENARIOS:
            ap.error(f"unknown scenario {k}")
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "host": socket.gethostname(), "cpus": os.cpu_count(),
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "command": "bench/fairness.sh " + " ".join(sys.argv[1:])}
    results = []
    try:
        for k in kinds:
            results.append(scenario_trial(k, args))
            log(f"{k}: reset latency p50 {results[-1]['p50_s']:.2f}s p99 {results[-1]['p99_s']:.2f}s")
    except BenchError as e:
        log(f"error: {e}")
        return 1
    text = render(results, meta)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "fairness-" + time.strftime("%Y%m%d-%H%M%S"))
    with open(stem + ".json", "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(text)
    log(f"wrote {stem}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
