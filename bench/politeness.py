#!/usr/bin/env python3
"""Politeness benchmark (issue 11): how close does a sender come to what a
rate-limited receiver allows, and how often does it run into the limit?

Called by bench/politeness.sh (see docs/BENCHMARKS.md, "Politeness (issue
11)"). Python 3 standard library only; run as root (a private Postfix).

The receiver, fresh for each contender:
  hikyaku sink --listen 127.0.0.60:PORT --max-connections-per-ip 3
               --rate-per-ip 300 --rate-reply "450 4.7.1 rate limited"
i.e. at most 3 connections and 300 MAIL commands a minute per client IP
(a token bucket that starts full, so minute 0 may see a burst of up to 300
more). Its per-IP counters ("per_ip" in the stats file) are the measurement.

Contenders, one after the other, each given its messages by smtp-source and
then watched for --minutes minutes counted from the sink's start:
  hikyaku   two [[source]]s (127.0.0.50, 127.0.0.51) in the implicit pool,
            a [[route]] to the sink, no per-source or per-site limits: the
            adaptive shaper has to find the receiver's limits itself
  postfix   the Debian Postfix, paced the usual way for such a receiver,
            i.e. what an operator who knows its limits would write:
              smtp_bind_address = 127.0.0.50
              transport_maps = inline:{ polite.test=smtp:[127.0.0.60]:PORT }
              smtp_destination_concurrency_limit = 3
              smtp_destination_rate_delay = 1s
              smtp_destination_concurrency_failed_cohort_limit = 10
            1s is the finest pacing Postfix can express: its time values
            are whole numbers of s, m, h, d or w (postconf(5)), and a
            rate delay allows at most one delivery per delay to a
            destination -- one message at a time, over one connection, so
            the concurrency limit has no effect. That is 60 messages a
            minute, a fifth of the 300 the receiver allows; Postfix has no
            setting between "one a second" and "unpaced". (An earlier
            version of this script wrote "200ms": Postfix reads that,
            without a warning, as 200 minutes -- the unit is the first
            letter -- and delivered one message per 200 minutes.) The
            failed-cohort limit of 10 is what postconf(5) asks for with a
            rate delay, so that one refused connection does not defer the
            whole destination.
  postfix-unpaced
            the other usual way: the same without the rate delay -- 3
            connections as fast as they go, the receiver's 450 replies
            defer what is over its rate, and Postfix retries the deferred
            mail on its own schedule (queue_run_delay and
            minimal_backoff_time at their defaults, 300s)
Both Postfix instances log to postfix.log in their work directory
(maillog_file through postlogd; kept with --keep); the counts of its
status=sent and status=deferred lines are reported.

Reported per contender: recipients accepted per minute (the sink's
per_minute), delivered per minute as a fraction of the allowed rate
(300/min x source IPs used), for all minutes and for the minutes after the
first; the share of MAIL attempts refused with the rate reply after the
first minute (sink rate_limited and recipients, sampled at the one-minute
mark and at the end; messages are single-recipient, so a MAIL attempt is a
RCPT attempt); peak concurrent connections and refused connections per IP;
wall time. Every wait is bounded; everything started is stopped in
`finally` blocks.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inject as ib  # noqa: E402  (the systems under test)
from inject import BenchError, NoInstrument, WorkDir, log  # noqa: E402

ib.LOG_TAG = "politeness"
REPO = ib.REPO
SINK_ADDRESS = "127.0.0.60"
SOURCES = {"s50": "127.0.0.50", "s51": "127.0.0.51"}
DOMAIN = "polite.test"
RATE_PER_IP = 300          # MAIL per minute per client IP at the sink
CONNECTIONS_PER_IP = 3
RATE_REPLY = "450 4.7.1 rate limited"
CONTENDERS = ("hikyaku", "postfix", "postfix-unpaced")
POSTFIX_RATE_DELAY_S = 1    # the finest pacing Postfix can express (whole seconds)


# Longest unix-domain socket name Postfix can connect to (sun_path, with its NUL).
SUN_PATH_MAX = 107


class PoliteSink(ib.SinkProcess):
    """A fresh `hikyaku sink` playing the rate-limited receiver; minute 0 of
    its per_minute counters starts when it is made."""

    def __init__(self, args, workdir):
        super().__init__(args.hikyaku, workdir, SINK_ADDRESS,
                         ["--max-connections-per-ip", str(CONNECTIONS_PER_IP), "--rate-per-ip", str(RATE_PER_IP),
                          "--rate-reply", RATE_REPLY])


def totals(stats):
    """(accepted recipients, rate-limited MAILs) over all client IPs."""
    ips = (stats or {}).get("per_ip") or {}
    return (sum(v["recipients"] for v in ips.values()), sum(v["rate_limited"] for v in ips.values()))


POSTFIX_POLITE_CF = """\
# bench/politeness.py: accept for any recipient from loopback and send
# {domain} to the sink, {pacing}
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
# Injection speed is not measured here; no flow control in the way.
in_flow_delay = 0s
transport_maps = inline:{{ {domain}=smtp:[{sink}]:{port} }}
smtp_bind_address = {bind}
smtp_tls_security_level = none
smtp_destination_concurrency_limit = {conc}
{rate_delay}\
# postconf(5): with a rate delay, "specify a _destination_concurrency_failed_cohort_limit
# of 10 or more" so that one refused connection does not defer the whole destination.
smtp_destination_concurrency_failed_cohort_limit = 10
# Postfix's own log, through postlogd (the postlog service of master.cf).
maillog_file = {maillog}
maillog_file_prefixes = {maillog_dir}
"""


class PostfixPolite(ib.PostfixSystem):
    """Postfix paced the usual way (rate_delay set) or not at all (None):
    see the module docstring."""

    name = "postfix"
    sink_port = None
    sources = ["127.0.0.50"]
    rate_delay_s = POSTFIX_RATE_DELAY_S

    def main_cf(self, queue, data):
        cf = ib.POSTFIX_MAIN_CF.format(queue=queue, data=data)
        cut = cf.index("# Accept for any recipient")
        if self.rate_delay_s:
            pacing = (f"paced the usual way for a receiver that allows\n# {CONNECTIONS_PER_IP} connections "
                      f"and {RATE_PER_IP} messages a minute per client IP, as finely as\n# Postfix can: "
                      f"one delivery per {self.rate_delay_s}s (time values are whole s, m, h, d, w).")
            rate_delay = f"smtp_destination_rate_delay = {self.rate_delay_s}s\n"
        else:
            pacing = (f"over at most {CONNECTIONS_PER_IP} connections and\n# otherwise unpaced: "
                      "the receiver's 450 replies defer what is over its rate.")
            rate_delay = ""
        return cf[:cut] + POSTFIX_POLITE_CF.format(
            domain=DOMAIN, sink=SINK_ADDRESS, port=self.sink_port, conc=CONNECTIONS_PER_IP,
            pacing=pacing, rate_delay=rate_delay, bind=self.sources[0], maillog=self.maillog(),
            maillog_dir=self.workdir)

    def start(self, fs, cgroup, tracer):
        longest = os.path.join(fs.mnt, "postfix-queue", "public", "postlog")
        if len(longest) > SUN_PATH_MAX:
            raise BenchError(f"Postfix's socket {longest} is longer than a unix-domain socket name may be "
                             f"({SUN_PATH_MAX} bytes): use a shorter --tmpdir")
        return super().start(fs, cgroup, tracer)

    def maillog(self):
        return os.path.join(self.workdir, "postfix.log")

    def log_counts(self):
        """status=sent / status=deferred lines of the smtp client in postfix.log."""
        counts = {"sent": 0, "deferred": 0, "bounced": 0}
        try:
            with open(self.maillog(), errors="replace") as f:
                for line in f:
                    for k in counts:
                        if f"status={k}" in line:
                            counts[k] += 1
        except OSError:
            return None
        return counts

    def describe(self):
        pacing = (f"smtp_destination_rate_delay = {self.rate_delay_s}s, " if self.rate_delay_s
                  else "no rate delay, ")
        return (super().describe() + f", smtp_destination_concurrency_limit = {CONNECTIONS_PER_IP}, " + pacing
                + f"smtp_destination_concurrency_failed_cohort_limit = 10, smtp_bind_address = {self.sources[0]}")


class PostfixUnpaced(PostfixPolite):
    name = "postfix-unpaced"
    rate_delay_s = None


SYSTEMS = {}   # contender -> class, filled in below


class HikyakuPolite(ib.HikyakuSystem):
    name = "hikyaku"
    sink_port = None
    sources = list(SOURCES.values())

    def extra_config(self):
        out = ["", "[delivery]", 'starttls = "never"']
        for name, address in SOURCES.items():
            out += ["", "[[source]]", f'name = "{name}"', f'address = "{address}"']
        out += ["", "[[route]]", f'domain = "{DOMAIN}"', f'to = "{SINK_ADDRESS}:{self.sink_port}"']
        return "\n".join(out) + "\n"

    def describe(self):
        return (super().describe() + ", [[source]] s50 = 127.0.0.50 and s51 = 127.0.0.51 (implicit pool), "
                "[[route]] to the sink, no per-source or per-site limits")


SYSTEMS.update({"hikyaku": HikyakuPolite, "postfix": PostfixPolite, "postfix-unpaced": PostfixUnpaced})


def inject(args, port, n):
    """Gives the system its n single-recipient messages (distinct recipients)."""
    cmd = ["smtp-source", "-s", str(args.sessions), "-m", str(n), "-d", "-N", "-M", "bench.example",
           "-f", "sender@bench.example", "-t", f"rcpt@{DOMAIN}", "-l", str(args.size),
           "-S", "hikyaku politeness benchmark", f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    ib.run(cmd, timeout=120 + n / 20)
    return time.monotonic() - t0


def contender_trial(kind, args):
    workdir = tempfile.mkdtemp(prefix=f"hikyaku-bench-polite-{kind}-p{os.getpid()}-", dir=args.tmpdir)
    os.chmod(workdir, 0o755)
    fs = WorkDir(workdir)
    sink = system = None
    window_s = args.minutes * 60
    try:
        sink = PoliteSink(args, workdir)
        system = SYSTEMS[kind](args, workdir)
        system.sink_port = sink.port
        n = args.messages or 700 * args.minutes * len(system.sources)
        log(f"{kind}: sink {SINK_ADDRESS}:{sink.port}; starting {kind}")
        port = system.start(fs, NoInstrument(), NoInstrument())
        log(f"{kind}: injecting {n} messages")
        inject_s = inject(args, port, n)
        log(f"{kind}: injected in {inject_s:.1f}s; watching until {args.minutes} min after the sink's start")
        at_minute = None
        done_at = None
        while True:
            elapsed = time.monotonic() - sink.started
            if at_minute is None and elapsed >= 60:
                at_minute = sink.stats()
            delivered, _ = totals(sink.stats())
            if delivered >= n and done_at is None:
                done_at = elapsed
                break
            if elapsed >= window_s:
                break
            if kind == "hikyaku" and system.proc.poll() is not None:
                raise BenchError(f"hikyaku exited ({system.proc.returncode})")
            time.sleep(0.5)
        wall_s = time.monotonic() - sink.started
        system.stop()
        postfix_log = system.log_counts() if isinstance(system, PostfixPolite) else None
        system = None
        final = sink.stop()
        sink = None
        r = summarize(kind, final, at_minute, n, inject_s, wall_s, done_at, args)
        r["postfix_log"] = postfix_log
        return r
    finally:
        if system:
            system.stop()
        if sink:
            sink.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"{kind}: kept {workdir}")


def summarize(kind, final, at_minute, n, inject_s, wall_s, done_at, args):
    ips = final.get("per_ip") or {}
    used = {ip: v for ip, v in ips.items() if v["recipients"] > 0 or v["rate_limited"] > 0}
    n_ips = max(1, len(used))
    allowed = RATE_PER_IP * n_ips
    minutes = args.minutes
    per_minute = [sum((v["per_minute"] + [0] * minutes)[m] for v in ips.values()) for m in range(minutes)]
    delivered, limited = totals(final)
    r0, l0 = totals(at_minute) if at_minute else (delivered, limited)
    after_r, after_l = delivered - r0, limited - l0
    later = per_minute[1:]
    return {
        "system": kind,
        "messages": n,
        "inject_s": inject_s,
        "source_ips": sorted(used),
        "allowed_per_min": allowed,
        "delivered": delivered,
        "per_minute": per_minute,
        "per_ip_per_minute": {ip: v["per_minute"][:minutes] for ip, v in ips.items()},
        "fraction_all": sum(per_minute) / (allowed * minutes),
        "fraction_after_first": (sum(later) / (allowed * len(later))) if later else None,
        "throttled_after_first": (after_l / (after_l + after_r)) if after_l + after_r else 0.0,
        "rate_limited_after_first": after_l,
        "rate_limited_total": limited,
        "peak_connections": {ip: v["peak_connections"] for ip, v in ips.items()},
        "refused_connections": {ip: v["refused_connections"] for ip, v in ips.items()},
        "connections": {ip: v["connections"] for ip, v in ips.items()},
        "all_delivered_s": done_at,
        "wall_s": wall_s,
    }


def render(results, meta):
    out = [f"Run {meta['date']} on {meta['host']} ({meta['cpus']} CPUs, load before {meta['loadavg']}); "
           f"command: `{meta['command']}`.", ""]
    for r in results:
        out.append(f"- {r['system']}: {r['describe']}")
    out += ["", "| | " + " | ".join(r["system"] for r in results) + " |",
            "| --- | " + " | ".join("---" for _ in results) + " |"]

    def row(name, f):
        out.append(f"| {name} | " + " | ".join(f(r) for r in results) + " |")

    row("source IPs used", lambda r: ", ".join(r["source_ips"]))
    row("allowed rate", lambda r: f"{r['allowed_per_min']}/min")
    row("messages given", lambda r: str(r["messages"]))
    row("accepted per minute (sink, minute 0 first)", lambda r: " / ".join(map(str, r["per_minute"])))
    row("delivered / allowed, all minutes", lambda r: f"{100 * r['fraction_all']:.0f} %")
    row("delivered / allowed, after minute 0",
        lambda r: f"{100 * r['fraction_after_first']:.0f} %" if r["fraction_after_first"] is not None else "n/a")
    row("MAIL refused with the rate reply after minute 0",
        lambda r: f"{100 * r['throttled_after_first']:.1f} % ({r['rate_limited_after_first']})")
    row("peak connections per IP (cap 3)",
        lambda r: ", ".join(f"{ip}: {v}" for ip, v in sorted(r["peak_connections"].items())))
    row("connections refused at the cap",
        lambda r: ", ".join(f"{ip}: {v}" for ip, v in sorted(r["refused_connections"].items())))
    if any(r.get("postfix_log") for r in results):
        row("Postfix log: status=sent / deferred",
            lambda r: f"{r['postfix_log']['sent']} / {r['postfix_log']['deferred']}" if r.get("postfix_log") else "")
    row("wall time", lambda r: (f"all delivered after {r['all_delivered_s']:.0f} s" if r["all_delivered_s"]
                                else f"{r['wall_s']:.0f} s window, {r['delivered']} of {r['messages']} delivered"))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=int, default=5, help="measured minutes per contender")
    ap.add_argument("--messages", type=int, help="messages per contender (default 700 x minutes per source IP)")
    ap.add_argument("--only", help="comma-separated contenders out of " + ",".join(CONTENDERS))
    ap.add_argument("--sessions", type=int, default=10, help="smtp-source sessions for the injection")
    ap.add_argument("--size", type=int, default=2048, help="body bytes per message")
    ap.add_argument("--hikyaku", default=os.path.join(REPO, "build/ci/src/app/hikyaku"))
    ap.add_argument("--tmpdir", default="/var/tmp")
    ap.add_argument("--out", default=os.path.join(REPO, "bench/results"))
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    args = ap.parse_args()
    args.nice = None
    if args.minutes < 1 or args.minutes > 60:
        ap.error("--minutes must be 1 to 60")
    contenders = args.only.split(",") if args.only else list(CONTENDERS)
    for c in contenders:
        if c not in CONTENDERS:
            ap.error(f"unknown contender {c}")
    if not os.access(args.hikyaku, os.X_OK):
        ap.error(f"no hikyaku binary at {args.hikyaku} (cmake --build --preset ci --target hikyaku)")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "host": socket.gethostname(),
            "cpus": os.cpu_count(), "loadavg": loadavg,
            "command": "sudo bench/politeness.sh " + " ".join(sys.argv[1:])}
    results = []
    for c in contenders:
        r = contender_trial(c, args)
        r["describe"] = SYSTEMS[c](args, "").describe()
        results.append(r)
        log(f"{c}: {json.dumps({k: v for k, v in r.items() if k != 'describe'})}")
    text = render(results, meta)
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(args.out, f"politeness-{stamp}.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    with open(os.path.join(args.out, f"politeness-{stamp}.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
