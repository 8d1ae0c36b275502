#!/usr/bin/env python3
"""Relay benchmark: hikyaku (sync = "group") against Postfix, delivering to the same sink.

Called by bench/relay.sh (see docs/BENCHMARKS.md, section "Relaying"). Python 3
standard library only; must run as root. The instruments -- a scratch ext4
file system on a loop device per trial (disk bytes), a cpuacct cgroup per
process group (CPU seconds, memory), a private ftrace instance (fsync calls)
-- and both systems under test come from bench/inject.py, which this script
imports; here they are configured to deliver instead of to keep.

Scenarios, each run once per --repeat, in this order:
  ceiling    smtp-source straight into smtp-sink: the most the load generator,
             the sink and loopback can do together
  postfix    a private Postfix relaying everything to the sink (relayhost)
  hikyaku    hikyaku relaying everything to the sink ([[route]])
  delivery   hikyaku delivering a spool pre-filled with [delivery] hold = true
  split      hikyaku, 80 % of the messages to live.test (the sink), 20 % to
             hole.test (a second sink): the control for ...
  blackhole  ... the same with hole.test routed to a host that accepts TCP
             connections and never answers

The end of a delivery run is read off the sink: smtp-sink -c prints its
message counter on every received message, unbuffered; a reader thread
notes the moment it reaches the target. The system's own view is checked
afterwards (hikyaku: GET /api/v1/stats delivered; Postfix: an empty queue).
Every wait is bounded; everything started is stopped in `finally` blocks.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inject as ib  # noqa: E402  (the shared instruments and systems)
from inject import BenchError, log  # noqa: E402

ib.LOG_TAG = "relay"
REPO = ib.REPO
SCENARIOS = ("ceiling", "postfix", "hikyaku", "delivery", "split", "blackhole")
LIVE, HOLE = "live.test", "hole.test"


# --------------------------------------------------------------------------
# The sink: Postfix's smtp-sink, with its running counter read live.

class Sink:
    """`smtp-sink -c -u nobody 127.0.0.1:PORT 1000` in its own cgroup. `-c`
    writes "sess=S quit=Q mesg=M\\r" to stdout each time a message's final
    "." arrives (and at session ends); the reader thread keeps the latest M
    and the monotonic time at which it first reached each waited-for count."""

    def __init__(self, tag, args):
        self.port = ib.free_port()
        self.cgroup = ib.Cgroup(f"hikyaku-bench-{tag}-sink")
        self.count = 0
        self.first_at = None   # monotonic time of the first message
        self._targets = {}     # count -> monotonic time reached (or None)
        self._cond = threading.Condition()
        cmd = self.cgroup.wrap() + f'exec {ib.nice_prefix(args)}"$@"'
        self.proc = subprocess.Popen(
            ["sh", "-c", cmd, "sh", "smtp-sink", "-c", "-u", "nobody", f"127.0.0.1:{self.port}", "1000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ib.wait_banner(self.port, time.monotonic() + 30, alive=lambda: self.proc.poll() is None,
                       what="smtp-sink")
        # wait_banner's probe connection is a session, not a message.

    def _read(self):
        pat = re.compile(rb"mesg=(\d+)")
        buf = b""
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            now = time.monotonic()
            buf += chunk
            cut = buf.rfind(b"\r")
            if cut < 0:
                continue
            last = pat.findall(buf[:cut])
            buf = buf[cut + 1:]
            if not last:
                continue
            n = int(last[-1])
            with self._cond:
                if n > 0 and self.first_at is None:
                    self.first_at = now
                self.count = n
                for t, at in self._targets.items():
                    if at is None and n >= t:
                        self._targets[t] = now
                self._cond.notify_all()

    def expect(self, n):
        """Registers `n` before the load starts, so that the moment the counter
        reaches it is recorded by the reader thread itself."""
        with self._cond:
            self._targets.setdefault(n, None)
            if self.count >= n:
                self._targets[n] = time.monotonic()

    def wait_for(self, n, deadline, alive=lambda: True):
        """Monotonic time at which the sink had received `n` messages, or a
        BenchError at `deadline` (saying how many had arrived)."""
        self.expect(n)
        with self._cond:
            while self._targets[n] is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"the sink received {self.count} of {n} messages before the deadline")
                if self.proc.poll() is not None:
                    raise BenchError(f"smtp-sink exited ({self.proc.returncode}) after {self.count} messages")
                if not alive():
                    raise BenchError(f"the system under test died; the sink had {self.count} of {n}")
                self._cond.wait(min(left, 1.0))
            return self._targets[n]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        self.cgroup.remove()
        return err


class Blackhole:
    """`hikyaku sink --blackhole`: accepts TCP connections and never answers."""

    def __init__(self, args, workdir):
        self.port = ib.free_port()
        self.log = open(os.path.join(workdir, "blackhole.log"), "w")
        self.proc = subprocess.Popen([args.hikyaku, "sink", "--blackhole", "--listen", f"127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        import socket
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"hikyaku sink --blackhole exited ({self.proc.returncode})")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError("hikyaku sink --blackhole did not listen within 30s")
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


# --------------------------------------------------------------------------
# The systems, configured to deliver.

POSTFIX_RELAY_CF = """\
# bench/relay.py: accept for any recipient from loopback and relay it all to
# the sink. in_flow_delay stays at its default (1s): with the queue manager
# delivering, flow control is how Postfix keeps injection from outrunning
# delivery.
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{sink_port}
default_destination_concurrency_limit = {conc}
relay_destination_concurrency_limit = {conc}
smtp_destination_concurrency_limit = {conc}
# The sink offers no STARTTLS; say so rather than rely on the default.
smtp_tls_security_level = none
"""


class PostfixRelay(ib.PostfixSystem):
    """The private instance of bench/inject.py, without the HOLD restriction
    and with relayhost = the sink. Postfix's flow control (in_flow_delay)
    is left at its default of 1s: with the queue manager delivering, it is
    the designed way of keeping injection from outrunning delivery."""

    name = "postfix"
    sink_port = None

    def main_cf(self, queue, data):
        # inject.py's settings up to its hold and flow-control part, which
        # is replaced by relaying.
        cf = ib.POSTFIX_MAIN_CF.format(queue=queue, data=data)
        cut = cf.index("# Accept for any recipient")
        return cf[:cut] + POSTFIX_RELAY_CF.format(sink_port=self.sink_port, conc=self.args.concurrency)

    def pending(self):
        return self.queued()   # queue files of any kind, after the stop

    def done(self, n):
        """Postfix's own view of the end: its queue holds no file."""
        return self.queued() == 0

    def describe(self):
        return (super().describe() + f", relayhost = the sink, default/relay/smtp_destination_concurrency_limit = "
                f"{self.args.concurrency}, in_flow_delay default (1s)")


class HikyakuRelay(ib.HikyakuSystem):
    """hikyaku with [[route]]s to the sink (and the blackhole), sync = "group"."""

    name = "hikyaku"
    routes = {}      # domain -> "127.0.0.1:PORT"
    hold = False

    def extra_config(self):
        out = ["", "[delivery]",
               f"hold = {'true' if self.hold else 'false'}",
               f"max_connections_per_site = {self.args.concurrency}",
               f'banner_timeout = "{self.args.banner_timeout}"',
               'starttls = "never"']
        if self.args.sources:
            # A pool of loopback sources with per-source limits that are
            # never hit (the shaping path runs, nothing waits on it).
            out += ["max_connections_per_source = %d" % self.args.concurrency,
                    'max_message_rate_per_source = "100000000/min"',
                    'max_connection_rate_per_source = "100000/s"']
            for i in range(self.args.sources):
                out += ["", "[[source]]", f'name = "s{50 + i}"', f'address = "127.0.0.{50 + i}"']
        for dom, to in self.routes.items():
            out += ["", "[[route]]", f'domain = "{dom}"', f'to = "{to}"']
        return "\n".join(out) + "\n"

    def delivery_stats(self):
        return ((self.stats() or {}).get("delivery")) or {}

    def done(self, n):
        return (self.delivery_stats().get("delivered") or 0) >= n

    pending = ib.HikyakuSystem.queued

    def describe(self):
        return (super().describe() + f", max_connections_per_site = {self.args.concurrency}, "
                f'banner_timeout = "{self.args.banner_timeout}", starttls = "never"'
                + (f", a pool of {self.args.sources} sources (127.0.0.50..) with limits never hit"
                   if self.args.sources else ""))


# --------------------------------------------------------------------------
# Load.

def source_cmd(args, port, messages, sessions, rcpt):
    cmd = ib.smtp_source_args(argparse.Namespace(**{**vars(args), "sessions": sessions}), port, messages)
    cmd[cmd.index("-t") + 1] = rcpt
    return cmd


class Load:
    """One or more smtp-source processes, started together in one cgroup."""

    def __init__(self, args, tag, jobs):
        self.cgroup = ib.Cgroup(f"hikyaku-bench-{tag}-load")
        self.procs = []
        self.ended = {}
        wrap = self.cgroup.wrap() + f'exec {ib.nice_prefix(args)}"$@"'
        self.t0 = time.monotonic()
        for name, cmd in jobs:
            p = subprocess.Popen(["sh", "-c", wrap, "sh"] + cmd, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            self.procs.append((name, p))

    def wait(self, deadline):
        """Waits for every smtp-source; returns {name: seconds from start}."""
        for name, p in self.procs:
            try:
                _, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                raise BenchError(f"smtp-source ({name}) did not finish in time")
            self.ended[name] = time.monotonic() - self.t0
            if p.returncode != 0:
                self.kill()
                raise BenchError(f"smtp-source ({name}) failed ({p.returncode}): {err.strip()[-1500:]}")
        return self.ended

    def kill(self):
        self.cgroup.kill_all()

    def remove(self):
        self.cgroup.remove()


# --------------------------------------------------------------------------
# Trials.

def per_k(v, n):
    return v * 1000.0 / n if v is not None else None


def ceiling_trial(args, trial_no):
    tag = f"ceiling-p{os.getpid()}-{trial_no}"
    sink = load = None
    n = args.messages
    try:
        sink = Sink(tag, args)
        sink.expect(n)
        log(f"ceiling: smtp-source -> smtp-sink, {n} messages")
        busy0 = ib.busy_cpu_seconds()
        load = Load(args, tag, [("all", source_cmd(args, sink.port, n, args.sessions, "rcpt@sink.test"))])
        load.wait(load.t0 + args.timeout)
        t_end = sink.wait_for(n, time.monotonic() + 30)
        e2e = t_end - load.t0
        r = {"system": "ceiling", "trial": trial_no, "messages": n, "e2e_s": e2e, "msgs_per_s": n / e2e,
             "inject_s": load.ended["all"], "load_cpu_s": load.cgroup.cpu_seconds(),
             "sink_cpu_s": sink.cgroup.cpu_seconds(), "sink_received": sink.count}
        r["other_cpu_s"] = ib.busy_cpu_seconds() - busy0 - (r["load_cpu_s"] or 0) - (r["sink_cpu_s"] or 0)
        return r
    finally:
        if load:
            load.kill()
            load.remove()
        if sink:
            sink.stop()


def relay_trial(kind, args, trial_no, message_size):
    """One delivering trial of hikyaku or Postfix (kind in postfix, hikyaku,
    delivery, split, blackhole), fully instrumented."""
    sysname = "postfix" if kind == "postfix" else "hikyaku"
    tag = f"{kind}-p{os.getpid()}-{trial_no}"
    workdir = tempfile.mkdtemp(prefix=f"hikyaku-bench-{kind}-p{os.getpid()}-", dir=args.tmpdir)
    os.chmod(workdir, 0o755)
    n = args.messages
    n_hole = int(round(n * args.hole_share)) if kind in ("split", "blackhole") else 0
    n_live = n - n_hole
    fs = cgroup = tracer = sampler = load = sink = sink2 = hole = system = None
    started = False
    result = {"system": kind, "trial": trial_no, "messages": n}
    try:
        fs = ib.ScratchFs(args.tmpdir, max(2 << 30, n * (args.size + 2048) * 12))
        cgroup = ib.Cgroup(f"hikyaku-bench-{tag}")
        tracer = ib.SyncTracer(f"hikyaku-bench-{tag}", buffer_kb=max(8192, n // 4))
        sink = Sink(tag, args)
        if sysname == "postfix":
            system = PostfixRelay(args, workdir)
            system.sink_port = sink.port
        else:
            system = HikyakuRelay(args, workdir)
            system.routes = {LIVE: f"127.0.0.1:{sink.port}"}
            if kind == "split":
                sink2 = Sink(tag + "-2", args)
                system.routes[HOLE] = f"127.0.0.1:{sink2.port}"
            elif kind == "blackhole":
                hole = Blackhole(args, workdir)
                system.routes[HOLE] = f"127.0.0.1:{hole.port}"
            system.hold = kind == "delivery"
        log(f"{kind}: starting {sysname} (trial {trial_no}, fs {fs.mnt} on {fs.dev}, sink :{sink.port})")
        started = True
        port = system.start(fs, cgroup, tracer)
        pid = system.main_pid()
        alive = (lambda: system.proc.poll() is None) if sysname == "hikyaku" else (lambda: True)
        time.sleep(1.0)
        fs.syncfs()
        time.sleep(0.5)

        sampler = ib.MemorySampler(cgroup)
        sampler.sample()
        sampler.start()
        io_pid = pid if sysname == "hikyaku" else None
        d0, io0, cpu0 = ib.diskstats(fs.dev), ib.proc_io(io_pid) if io_pid else None, cgroup.cpu_seconds()
        busy0 = ib.busy_cpu_seconds()
        c0 = system.counters()
        sink.expect(n_live)
        tracer.mark("inject")
        if n_hole:
            jobs = [("live", source_cmd(args, port, n_live, args.sessions - args.hole_sessions, f"rcpt@{LIVE}")),
                    ("hole", source_cmd(args, port, n_hole, args.hole_sessions, f"rcpt@{HOLE}"))]
            if sink2:
                sink2.expect(n_hole)
        else:
            jobs = [("all", source_cmd(args, port, n, args.sessions, f"rcpt@{LIVE}"))]
        log(f"{kind}: injecting {n} messages" + (f" ({n_live} to {LIVE}, {n_hole} to {HOLE})" if n_hole else ""))
        load = Load(args, tag, jobs)
        t0 = load.t0
        ended = load.wait(t0 + args.timeout)
        inject_s = max(ended.values())
        log(f"{kind}: injected in {inject_s:.1f}s ({n / inject_s:.0f}/s)")

        if kind == "delivery":
            # Injection alone is done: let it settle, stop, release the hold,
            # and time the delivery of the spool from the restart.
            ib.wait_quiet(fs, pid, limit_s=args.settle_timeout)
            fs.syncfs()
            result["held_delivered"] = system.delivery_stats().get("delivered")
            result["held_sink_count"] = sink.count
            system.stop()
            fs.syncfs()   # what the stop wrote is not the delivery's
            system.hold = False
            d0, cpu0 = ib.diskstats(fs.dev), cgroup.cpu_seconds()
            busy0 = ib.busy_cpu_seconds()
            load_cpu0 = load.cgroup.cpu_seconds()
            tracer.mark("deliver")
            t0 = time.monotonic()
            port = system.start(fs, cgroup, tracer)
            pid = io_pid = system.main_pid()
            io0 = ib.proc_io(pid)
            result["restart_s"] = time.monotonic() - t0
            # The spool replays its journal on open and flushes the recovered
            # memtables to table files: a cost of the restart, not of
            # delivering, reported on its own (it is also in disk B/msg).
            fs.syncfs()
            result["disk_bytes_per_msg_restart"] = (ib.diskstats(fs.dev)["write_bytes"] - d0["write_bytes"]) / n
            c0 = {}
        t_live = sink.wait_for(n_live, t0 + args.deliver_timeout, alive=alive)
        e2e = t_live - t0
        log(f"{kind}: the sink had all {n_live} messages {e2e:.1f}s after the start")
        t_hole = None
        if sink2:
            t_hole = sink2.wait_for(n_hole, t0 + args.deliver_timeout, alive=alive)
        # The system's own view: every message delivered (bounded wait).
        confirm_deadline = time.monotonic() + args.confirm_timeout
        done = False
        if kind != "blackhole":
            while time.monotonic() < confirm_deadline:
                if system.done(n):
                    done = True
                    break
                time.sleep(0.2)
            if not done:
                log(f"warning: {kind}: the system did not report all {n} delivered within {args.confirm_timeout}s")
        t_done = time.monotonic() - t0
        ds = system.delivery_stats() if sysname == "hikyaku" else {}
        if kind == "blackhole":
            # The live site is done; now check that the blackholed mail is
            # deferred once banner_timeout expires (bounded: the timeout
            # plus 60 s), so the run shows the timeout at work.
            limit = time.monotonic() + ib_duration_s(args.banner_timeout) + 60
            while time.monotonic() < limit:
                if (system.delivery_stats().get("deferred") or 0) >= n_hole:
                    result["hole_deferred_after_s"] = time.monotonic() - t0
                    break
                time.sleep(0.5)
            else:
                log(f"warning: blackhole: {system.delivery_stats().get('deferred')} of {n_hole} "
                    "blackholed recipients deferred by the deadline")
        tracer.mark("settle")
        d1, cpu1 = ib.diskstats(fs.dev), cgroup.cpu_seconds()
        waited = ib.wait_quiet(fs, pid, limit_s=args.settle_timeout)
        fs.syncfs()
        time.sleep(0.5)
        tracer.mark("stop")
        d2, io2, cpu2 = ib.diskstats(fs.dev), ib.proc_io(io_pid) if io_pid else None, cgroup.cpu_seconds()
        busy2 = ib.busy_cpu_seconds()
        with open("/proc/loadavg") as f:
            result["loadavg_after"] = " ".join(f.read().split()[:3])
        c2 = system.counters()
        ds2 = system.delivery_stats() if sysname == "hikyaku" else {}
        sampler.stop()
        hwm_main = ib.proc_status_kb(pid, "VmHWM") if sysname == "hikyaku" else None
        system.stop()
        started = False
        fs.syncfs()
        d3 = ib.diskstats(fs.dev)
        pending = system.pending()
        spool_du = du_bytes(system.spool if sysname == "hikyaku" else system.queue)
        tr = tracer.counts()
        sink_count = sink.count

        fsyncs = sfr = None
        if tr:
            phases = ("deliver", "settle") if kind == "delivery" else ("inject", "settle")
            ph = {}
            for name in phases:
                for k, v in tr["phases"].get(name, {}).items():
                    ph[k] = ph.get(k, 0) + v
            fsyncs = (ph.get("fsync", 0) + ph.get("fdatasync", 0)) / n
            sfr = ph.get("sync_file_range", 0) / n
            result["sync_calls"] = ph
            result["sync_calls_all_phases"] = tr["phases"]
            if tr["overrun"]:
                log(f"warning: ftrace buffer overran by {tr['overrun']} events; fsync counts are low")
                result["trace_overrun"] = tr["overrun"]

        def per(a, b, key, k=n):
            if a is None or b is None or a.get(key) is None or b.get(key) is None:
                return None
            return (b[key] - a[key]) / k

        cpu_s = (cpu2 - cpu0) if cpu0 is not None and cpu2 is not None else None
        load_cpu = load.cgroup.cpu_seconds()
        if kind == "delivery":
            load_cpu = (load_cpu or 0) - (load_cpu0 or 0)
        result.update({
            "e2e_s": e2e,
            "msgs_per_s": n_live / e2e,
            "inject_s": inject_s if kind != "delivery" else None,
            "inject_msgs_per_s": n / inject_s,
            "done_s": t_done,
            "hole_e2e_s": (t_hole - t0) if t_hole else None,
            "settle_s": waited,
            "disk_bytes_per_msg_run": per(d0, d1, "write_bytes"),
            "disk_bytes_per_msg": per(d0, d2, "write_bytes"),
            "disk_bytes_per_msg_with_stop": per(d0, d3, "write_bytes"),
            "device_flushes_per_msg": per(d0, d2, "flushes"),
            "proc_write_bytes_per_msg": per(io0, io2, "write_bytes"),
            "fsyncs_per_msg": fsyncs,
            "sync_file_range_per_msg": sfr,
            "peak_pss_mib": sampler.peak_pss_kb / 1024,
            "peak_hwm_mib": (hwm_main if hwm_main else sampler.peak_hwm_kb) / 1024,
            "peak_processes": sampler.peak_procs,
            "cpu_s": cpu_s,
            "cpu_s_per_1k": per_k(cpu_s, n),
            "cpu_s_run": (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
            "load_cpu_s": load_cpu,
            "sink_cpu_s": sink.cgroup.cpu_seconds(),
            "other_cpu_s": (busy2 - busy0 - (cpu_s or 0) - (load_cpu or 0) - (sink.cgroup.cpu_seconds() or 0)),
            "sink_received": sink_count + (sink2.count if sink2 else 0),
            "system_done": done if kind != "blackhole" else None,
            "pending_after_stop": pending,
            "store_bytes_after_stop": spool_du,
            "delivery_stats": ds2 or ds,
            "counters": {k: c2[k] - c0.get(k, 0) for k in (c2 or {}) if c0 is not None},
            "message_size": message_size,
        })
        if n_hole:
            result["live_messages"] = n_live
            result["hole_messages"] = n_hole
        if kind == "blackhole":
            # Deferred at the moment the live site was done (ds) and at the end.
            result["hole_deferred_when_live_done"] = ds.get("deferred")
            result["hole_deferred_at_end"] = ds2.get("deferred")
        return result
    finally:
        if sampler:
            sampler.stop()
        if started and system:
            try:
                system.stop()
            except Exception as e:
                log(f"warning: stopping {sysname}: {e}")
        for res in (load,):
            if res:
                res.kill()
                res.remove()
        for s in (sink, sink2):
            if s:
                err = s.stop()
                if err.strip():
                    result["sink_stderr"] = err.strip()[-500:]
        if hole:
            hole.stop()
        ib.release_trial(resources=(cgroup, tracer), fs=fs, workdir=workdir, keep=args.keep)


def ib_duration_s(text):
    """Seconds of a configuration duration such as "30s", "2m", "500ms"."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text.strip())
    if not m:
        raise BenchError(f"cannot read duration {text!r}")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def du_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


# --------------------------------------------------------------------------
# Report.

COLUMNS = [
    ("msgs_per_s", "end-to-end msgs/s", "{:.0f}"),
    ("e2e_s", "end-to-end s", "{:.1f}"),
    ("inject_msgs_per_s", "injection msgs/s", "{:.0f}"),
    ("disk_bytes_per_msg", "disk B/msg", "{:.0f}"),
    ("disk_bytes_per_msg_with_stop", "disk B/msg incl. stop", "{:.0f}"),
    ("fsyncs_per_msg", "fsyncs/msg", "{:.3f}"),
    ("device_flushes_per_msg", "device flushes/msg", "{:.3f}"),
    ("peak_hwm_mib", "peak RSS MiB", "{:.1f}"),
    ("peak_pss_mib", "peak PSS MiB (all procs)", "{:.1f}"),
    ("cpu_s_per_1k", "CPU s / 1000 msgs", "{:.3f}"),
    ("load_cpu_s", "smtp-source CPU s", "{:.1f}"),
    ("sink_cpu_s", "sink CPU s", "{:.1f}"),
    ("other_cpu_s", "other CPU s", "{:.1f}"),
    ("sink_received", "sink received", "{}"),
    ("pending_after_stop", "left in queue", "{}"),
]


def fmt(v, f):
    return ib.fmt(v, f)


def median_result(rs):
    out = dict(rs[-1])
    for key in {k for r in rs for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}:
        vals = [r[key] for r in rs if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        out[key] = statistics.median(vals) if vals else None
    out["trials"] = len(rs)
    return out


def render(meta, results, describe):
    med = {k: median_result(v) for k, v in results.items() if v}
    L = [f"# Relay benchmark, {meta['date']}", "",
         f"- command: `{meta['command']}`",
         f"- load: {meta['messages']} messages of {meta['message_size']} B on the wire (base64 of random "
         f"bytes), {meta['sessions']} smtp-source sessions with -d (connection reuse), one recipient each",
         f"- sink: `smtp-sink -c -u nobody 127.0.0.1:PORT 1000` (Postfix {meta['postfix_version']}); "
         "end = the moment its counter reached the last message",
         f"- trials per scenario: {meta['repeat']} (values are medians)",
         f"- machine: {meta['machine']}; load average before the run: {meta['loadavg']}",
         f"- storage: {meta['storage']}"]
    if meta.get("nice") is not None:
        L.append(f"- the systems, smtp-source and smtp-sink ran at niceness {meta['nice']}")
    for k, d in describe.items():
        L.append(f"- {k}: {d}")
    L += ["", "| scenario | " + " | ".join(c[1] for c in COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    for k in SCENARIOS:
        if k in med:
            L.append(f"| {k} | " + " | ".join(fmt(med[k].get(c), f) for c, _, f in COLUMNS) + " |")
    L += ["", "For split and blackhole, end-to-end msgs/s is the live site's: messages to live.test "
          "÷ seconds until the sink had them all.", ""]
    ceil = med.get("ceiling", {}).get("msgs_per_s")
    h, p = med.get("hikyaku"), med.get("postfix")
    L.append("Targets:")
    L.append("")
    if ceil:
        for k in ("postfix", "hikyaku", "delivery"):
            if k in med:
                fr = med[k]["msgs_per_s"] / ceil
                tgt = f" (target ≥ 35%: {'PASS' if fr >= 0.35 else 'FAIL'})" if k == "hikyaku" else ""
                L.append(f"- {k}: {fr:.0%} of the ceiling ({ceil:.0f} msgs/s){tgt}")
    if h and p:
        r = h["msgs_per_s"] / p["msgs_per_s"]
        L.append(f"- hikyaku ÷ Postfix, end-to-end: {r:.1f}× (target ≥ 10×): {'PASS' if r >= 10 else 'FAIL'}")
        pr = [a["msgs_per_s"] / b["msgs_per_s"] for a, b in zip(results.get("hikyaku", []), results.get("postfix", []))]
        if len(pr) > 1:
            L.append(f"  (per trial pair: {', '.join(f'{x:.1f}×' for x in pr)})")
        L.append(f"- CPU per message: hikyaku {fmt(h.get('cpu_s_per_1k'), '{:.3f}')} s / 1000, Postfix "
                 f"{fmt(p.get('cpu_s_per_1k'), '{:.3f}')} s / 1000 "
                 f"({fmt(h['cpu_s_per_1k'] / p['cpu_s_per_1k'] if h.get('cpu_s_per_1k') and p.get('cpu_s_per_1k') else None, '{:.2f}')}×)")
    s, b = med.get("split"), med.get("blackhole")
    if s and b:
        r = b["msgs_per_s"] / s["msgs_per_s"]
        L.append(f"- live site with 20% of the mail to a blackhole: {b['msgs_per_s']:.0f} msgs/s vs "
                 f"{s['msgs_per_s']:.0f} without ({r:.0%}; target ≥ 90%): {'PASS' if r >= 0.9 else 'FAIL'}")
        L.append(f"  (blackholed recipients deferred when the live site was done: "
                 f"{fmt(b.get('hole_deferred_when_live_done'), '{}')} of {fmt(b.get('hole_messages'), '{}')}; "
                 f"all deferred {fmt(b.get('hole_deferred_after_s'), '{:.0f}')} s after the start)")
        pr = [x["msgs_per_s"] / y["msgs_per_s"] for x, y in zip(results.get("blackhole", []), results.get("split", []))]
        if len(pr) > 1:
            L.append(f"  (per trial pair: {', '.join(f'{x:.0%}' for x in pr)})")
    checks = []
    for k, m in med.items():
        if k == "ceiling":
            continue
        want = m.get("live_messages") if k == "blackhole" else m["messages"]
        got = m.get("sink_received")
        checks.append(f"{k} sink {fmt(got, '{}')}/{want}, system done {m.get('system_done')}, "
                      f"left {fmt(m.get('pending_after_stop'), '{}')}")
    if checks:
        L.append("- counts (last trial): " + "; ".join(checks))
    L += ["", "Per trial (in the order run):", "",
          "| trial | scenario | end-to-end msgs/s | injection msgs/s | fsyncs/msg | CPU s / 1000 | other CPU s | load avg after |",
          "|---|---|---|---|---|---|---|---|"]
    for i in range(max(len(v) for v in results.values())):
        for k in SCENARIOS:
            rs = results.get(k, [])
            if i < len(rs):
                r = rs[i]
                L.append(f"| {i + 1} | {k} | {fmt(r.get('msgs_per_s'), '{:.0f}')} | "
                         f"{fmt(r.get('inject_msgs_per_s'), '{:.0f}')} | {fmt(r.get('fsyncs_per_msg'), '{:.3f}')} | "
                         f"{fmt(r.get('cpu_s_per_1k'), '{:.3f}')} | {fmt(r.get('other_cpu_s'), '{:.1f}')} | "
                         f"{r.get('loadavg_after', '')} |")
    L.append("")
    for k in ("hikyaku", "delivery", "split", "blackhole"):
        if k in med and med[k].get("delivery_stats"):
            L.append(f"- {k} (last trial): delivery stats {json.dumps(med[k]['delivery_stats'])}; spool counters "
                     f"{json.dumps(med[k].get('counters'))}; store after stop {fmt(med[k].get('store_bytes_after_stop'), '{}')} B")
    if "postfix" in med:
        L.append(f"- postfix (last trial): queue after stop {fmt(med['postfix'].get('store_bytes_after_stop'), '{}')} B; "
                 f"sync calls {json.dumps(med['postfix'].get('sync_calls'))}")
    if "delivery" in med:
        d = med["delivery"]
        L.append(f"- delivery: restart to SMTP banner {fmt(d.get('restart_s'), '{:.1f}')} s (included in its "
                 f"end-to-end time); of its disk B/msg, {fmt(d.get('disk_bytes_per_msg_restart'), '{:.0f}')} were "
                 "written by the restart itself (journal replay, recovered memtables written out) before any delivery; "
                 f"held-phase injection {fmt(d.get('inject_msgs_per_s'), '{:.0f}')} msgs/s")
    L.append("")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated scenarios out of " + ",".join(SCENARIOS))
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--quick", action="store_true", help="10 000 messages")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--size", type=int, default=5120, help="body bytes per message")
    ap.add_argument("--concurrency", type=int, default=20,
                    help="connections to the sink: Postfix *_destination_concurrency_limit and hikyaku "
                         "max_connections_per_site (default 20, both systems' default)")
    ap.add_argument("--banner-timeout", default="30s", help="hikyaku [delivery] banner_timeout")
    ap.add_argument("--hole-share", type=float, default=0.2, help="share of messages to the blackhole")
    ap.add_argument("--sources", type=int, default=0,
                    help="hikyaku sends from a pool of N loopback sources (127.0.0.50..) with limits never hit")
    ap.add_argument("--hole-sessions", type=int, default=10, help="smtp-source sessions of the blackhole share")
    ap.add_argument("--hikyaku", default=os.path.join(REPO, "build/release/src/app/hikyaku"))
    ap.add_argument("--tmpdir", default="/var/tmp")
    ap.add_argument("--timeout", type=float, help="seconds for one injection (default 120 + messages/50)")
    ap.add_argument("--deliver-timeout", type=float,
                    help="seconds from the start until the sink must have everything (default 300 + messages/20)")
    ap.add_argument("--confirm-timeout", type=float, default=120,
                    help="seconds for the system to report everything delivered after the sink had it")
    ap.add_argument("--settle-timeout", type=float, default=300)
    ap.add_argument("--out", default=os.path.join(REPO, "bench/results"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--nice", type=int, metavar="N")
    ap.add_argument("--cleanup-stale", action="store_true")
    ap.add_argument("--render", metavar="JSON")
    args = ap.parse_args()
    args.body = "random"
    if args.render:
        with open(args.render) as f:
            d = json.load(f)
        md = render(d["meta"], d["trials"], d["describe"])
        print(md)
        with open(os.path.splitext(args.render)[0] + ".md", "w") as f:
            f.write(md)
        return 0
    if args.quick:
        args.messages = 10000
    if args.timeout is None:
        args.timeout = 120 + args.messages / 50
    if args.deliver_timeout is None:
        args.deliver_timeout = 300 + args.messages / 20
    args.hikyaku = os.path.abspath(args.hikyaku)
    ib.refuse_stale_build(args.hikyaku)
    only = SCENARIOS
    if args.only:
        only = tuple(s.strip() for s in args.only.split(","))
        bad = [s for s in only if s not in SCENARIOS]
        if bad:
            raise BenchError(f"unknown scenario {bad}; choose from {','.join(SCENARIOS)}")
    if not 0 < args.hole_sessions < args.sessions:
        raise BenchError("--hole-sessions must be between 1 and --sessions - 1")
    if os.geteuid() != 0:
        raise BenchError("run as root (loop mounts, cgroups, ftrace, a private Postfix, smtp-sink -u)")
    if args.cleanup_stale:
        ib.cleanup_stale(args.tmpdir)
        return 0
    stale = ib.stale_resources(args.tmpdir)
    if stale:
        log(f"warning: {len(stale)} leftovers of earlier runs (e.g. {stale[0][1]}); "
            "remove them with bench/relay.sh --cleanup-stale")
    for tool in ("smtp-source", "smtp-sink", "postfix", "mkfs.ext4", "losetup"):
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found (apt-get install postfix e2fsprogs mount)")
    if any(s != "ceiling" and s != "postfix" for s in only) and not os.access(args.hikyaku, os.X_OK):
        raise BenchError(f"no hikyaku binary at {args.hikyaku} (cmake --preset release && cmake --build --preset release)")

    def on_signal(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    msg_dir = tempfile.mkdtemp(prefix=f"hikyaku-bench-msg-p{os.getpid()}-", dir=args.tmpdir)
    try:
        os.chmod(msg_dir, 0o755)
        args.message_file = os.path.join(msg_dir, "message.eml")
        ib.write_message_file(args.message_file, args.size)
        message_size, _, _ = ib.measure_message_size(args)
        log(f"message on the wire: {message_size} bytes")
        with open("/proc/loadavg") as f:
            loadavg = " ".join(f.read().split()[:3])
        results = {k: [] for k in only}
        describe = {}
        for i in range(1, args.repeat + 1):
            for k in only:
                if k == "ceiling":
                    r = ceiling_trial(args, i)
                else:
                    r = relay_trial(k, args, i, message_size)
                    describe.setdefault("postfix" if k == "postfix" else "hikyaku",
                                        (PostfixRelay if k == "postfix" else HikyakuRelay)(args, "").describe())
                results[k].append(r)
                log(f"{k} trial {i}: " + ", ".join(f"{lbl} {fmt(r.get(c), f)}" for c, lbl, f in COLUMNS
                                                   if r.get(c) is not None))
        now = datetime.datetime.now()
        cpu = "?"
        try:
            with open("/proc/cpuinfo") as f:
                cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
        except (OSError, AttributeError):
            pass
        import platform
        meta = {
            "date": now.strftime("%Y-%m-%d %H:%M"),
            "command": "bench/relay.sh " + " ".join(sys.argv[1:]),
            "messages": args.messages, "size": args.size, "sessions": args.sessions,
            "message_size": message_size, "repeat": args.repeat, "nice": args.nice,
            "postfix_version": ib.run(["postconf", "-d", "mail_version"], timeout=10, check=False)
                                 .stdout.split("=")[-1].strip(),
            "machine": f"{os.cpu_count()} × {cpu}, Linux {platform.release()}",
            "loadavg": loadavg,
            "storage": "fresh ext4 on a loop device with direct I/O per trial, backing file on "
                       f"{ib.device_of(args.tmpdir)}; counters from /proc/diskstats of the loop device",
        }
        md = render(meta, results, describe)
        print(md)
        os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, "relay-" + now.strftime("%Y%m%d-%H%M%S"))
        with open(stem + ".md", "w") as f:
            f.write(md)
        with open(stem + ".json", "w") as f:
            json.dump({"meta": meta, "describe": describe, "trials": results}, f, indent=1, default=str)
        log(f"wrote {stem}.md and {stem}.json")
        bad = [k for k, rs in results.items() for r in rs
               if k not in ("ceiling", "blackhole") and r.get("system_done") is False]
        return 1 if bad else 0
    finally:
        shutil.rmtree(msg_dir, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
