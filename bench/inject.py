#!/usr/bin/env python3
"""Injection benchmark: hikyaku (sync = "group") against Postfix, same load, same run.

Called by bench/inject.sh (see docs/BENCHMARKS.md for what is measured and why).
Python 3 standard library only. Must run as root: it mounts a scratch ext4
file system on a loop device per trial (so the block-device counters see the
system under test and nothing else), puts each system in its own cpuacct
cgroup (CPU seconds, process list for memory sampling) and counts sync system
calls with a private ftrace instance filtered on the system's process tree.

Every wait is bounded; every resource the script creates is released in
`finally` blocks and on SIGINT/SIGTERM/SIGHUP.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
CPUACCT_ROOT = "/sys/fs/cgroup/cpuacct"
SYNC_SYSCALLS = ("fsync", "fdatasync", "sync_file_range", "msync", "syncfs", "sync")
SECTOR = 512


class BenchError(Exception):
    """A failure of the benchmark setup or of a system under test."""


# Prefix of progress lines; bench/relay.py, which imports this module, sets its own.
LOG_TAG = "inject"


def log(msg):
    print(f"[{LOG_TAG} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout=60, check=True, **kw):
    """subprocess.run with a mandatory timeout and readable errors."""
    try:
        p = subprocess.run(cmd, timeout=timeout, capture_output=True, text=True, **kw)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"timed out after {timeout}s: {' '.join(cmd)}") from e
    if check and p.returncode != 0:
        raise BenchError(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}{p.stderr}".rstrip())
    return p


def nice_prefix(args):
    """`nice -n N ` for --nice N (systems and load generator alike), or ""."""
    return f"nice -n {int(args.nice)} " if args.nice is not None else ""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_banner(port, deadline, alive=lambda: True, what="server"):
    """Waits until 127.0.0.1:port answers with a 220 greeting (RFC 5321 4.3.1)."""
    last = None
    while time.monotonic() < deadline:
        if not alive():
            raise BenchError(f"{what} exited before its SMTP port answered")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(5)
                line = s.recv(512).decode("latin-1")
                if line.startswith("220"):
                    try:
                        s.sendall(b"QUIT\r\n")
                        s.recv(512)
                    except OSError:
                        pass
                    return
                last = line.strip()
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    raise BenchError(f"{what}: no 220 banner on 127.0.0.1:{port} ({last})")


# --------------------------------------------------------------------------
# The message smtp-source sends, measured exactly once per run.

def write_message_file(path, body_size):
    """A message as a mailing would send it: headers, then `body_size` bytes
    of base64 text (76-character lines, LF ends; smtp-source turns them into
    CRLF). The base64 encodes random bytes, so the content does not compress
    better than about 3/4 -- like an attachment or an image, and unlike
    smtp-source's own filler of repeated 'X' lines, which any compressing
    spool shrinks twentyfold and which would make "bytes written per message"
    measure the compressor instead of the storage."""
    import base64
    headers = ("From: Bench Sender <sender@bench.example>\n"
               "To: <rcpt@bench.example>\n"
               "Subject: hikyaku injection benchmark\n"
               "Date: Sat, 28 Nov 2026 12:00:00 +0000\n"
               "Message-ID: <injection-benchmark@bench.example>\n"
               "MIME-Version: 1.0\n"
               "Content-Type: application/octet-stream\n"
               "Content-Transfer-Encoding: base64\n"
               "\n")
    lines = []
    remaining = body_size
    while remaining > 0:
        n = min(76, remaining - 1) if remaining > 1 else 1
        chunk = base64.b64encode(os.urandom(57)).decode()[:n]
        lines.append(chunk)
        remaining -= len(chunk) + 2  # + CRLF on the wire
    with open(path, "w") as f:
        f.write(headers + "\n".join(lines) + "\n")


def smtp_source_args(args, port, messages):
    cmd = ["smtp-source",
           "-s", str(args.sessions),      # parallel sessions
           "-m", str(messages),           # total messages over all sessions
           "-d",                          # reuse the connection for the next message
           "-N",                          # distinct recipient per message
           "-M", "bench.example",         # HELO name
           "-f", "sender@bench.example",
           "-t", "rcpt@bench.example"]
    if args.body == "filler":
        # smtp-source's generated headers and 'X' filler lines.
        cmd += ["-l", str(args.size), "-S", "hikyaku injection benchmark"]
    else:
        cmd += ["-F", args.message_file]
    return cmd + [f"127.0.0.1:{port}"]


def measure_message_size(args):
    """Runs smtp-source for one message against a minimal in-process SMTP
    receiver and returns the DATA payload size in bytes as sent on the wire
    (headers + body, CRLF line ends, before dot-stuffing removal)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(20)
    port = srv.getsockname()[1]
    result = {}

    def serve():
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(20)
            f = conn.makefile("rb")
            conn.sendall(b"220 sizer\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    body = bytearray()
                    while True:
                        chunk = f.readline()
                        if not chunk or chunk == b".\r\n":
                            break
                        body += chunk
                    result["size"] = len(body)
                    result["sample"] = bytes(body[:600])
                    result["zlib_ratio"] = len(zlib.compress(bytes(body), 6)) / max(1, len(body))
                    conn.sendall(b"250 ok\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        a = argparse.Namespace(**vars(args))
        a.sessions = 1
        run(smtp_source_args(a, port, 1), timeout=30)
    finally:
        t.join(timeout=10)
        srv.close()
    if "size" not in result:
        raise BenchError("could not capture a sample message from smtp-source")
    return result["size"], result["sample"], result["zlib_ratio"]


# --------------------------------------------------------------------------
# Kernel-side instruments.

class Cgroup:
    """A cpuacct cgroup (v1) holding one system's processes: CPU time and
    the process list. Processes are put in by a shell wrapper before exec."""

    def __init__(self, name):
        self.path = None
        if os.path.isdir(CPUACCT_ROOT):
            p = os.path.join(CPUACCT_ROOT, name)
            try:
                os.mkdir(p)
                self.path = p
            except OSError as e:
                log(f"warning: no cpuacct cgroup ({e}); CPU seconds will be n/a")

    def wrap(self):
        return f'echo $$ > {self.path}/cgroup.procs; ' if self.path else ""

    def cpu_seconds(self):
        if not self.path:
            return None
        with open(os.path.join(self.path, "cpuacct.usage")) as f:
            return int(f.read()) / 1e9

    def pids(self):
        if not self.path:
            return []
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]

    def kill_all(self, timeout=10):
        """SIGKILLs the processes this script put in the cgroup (by pid)."""
        deadline = time.monotonic() + timeout
        while self.path and time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    def remove(self):
        if not self.path:
            return
        self.kill_all()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.rmdir(self.path)
                break
            except OSError:
                time.sleep(0.2)
        self.path = None


class SyncTracer:
    """Counts sync system calls (fsync, fdatasync, sync_file_range, msync,
    syncfs, sync) issued by one process tree, using a private ftrace instance:
    the tree's root pid goes into set_event_pid with the event-fork option, so
    every later child process and thread is followed. Markers written to the
    instance's trace_marker split the count into phases. Overhead: one ring
    buffer record per sync call; no ptrace."""

    def __init__(self, name, buffer_kb):
        self.inst = None
        root = next((r for r in TRACEFS_CANDIDATES if os.path.isdir(os.path.join(r, "instances"))), None)
        if root is None:
            try:
                os.makedirs(TRACEFS_CANDIDATES[0], exist_ok=True)
                run(["mount", "-t", "tracefs", "nodev", TRACEFS_CANDIDATES[0]], timeout=10)
                root = TRACEFS_CANDIDATES[0]
            except (BenchError, OSError) as e:
                log(f"warning: tracefs unavailable ({e}); fsync counts will be n/a")
                return
        inst = os.path.join(root, "instances", name)
        # Process names of trace records come from the kernel's global
        # pid->comm cache (128 entries by default); Postfix alone runs ~110
        # processes, so the cache is enlarged for the run and restored after.
        self.cmdlines_file = os.path.join(root, "saved_cmdlines_size")
        self.cmdlines_saved = None
        try:
            with open(self.cmdlines_file) as f:
                cur = int(f.read())
            if cur < 4096:
                with open(self.cmdlines_file, "w") as f:
                    f.write("4096")
                self.cmdlines_saved = cur
        except (OSError, ValueError):
            pass
        try:
            os.mkdir(inst)
            self.inst = inst
            self._w("buffer_size_kb", str(buffer_kb))
            self._w("options/event-fork", "1")
            self.events = []
            for sc in SYNC_SYSCALLS:
                ev = os.path.join(inst, "events/syscalls", f"sys_enter_{sc}", "enable")
                if os.path.exists(ev):
                    self._w(f"events/syscalls/sys_enter_{sc}/enable", "1")
                    self.events.append(sc)
            self._w("tracing_on", "1")
        except OSError as e:
            log(f"warning: ftrace instance failed ({e}); fsync counts will be n/a")
            self.remove()

    def _w(self, rel, value):
        with open(os.path.join(self.inst, rel), "w") as f:
            f.write(value)

    def wrap(self):
        return f'echo $$ >> {self.inst}/set_event_pid; ' if self.inst else ""

    def mark(self, label):
        if self.inst:
            self._w("trace_marker", f"BENCH_MARK {label}")

    def counts(self):
        """{phase: {syscall: n}} where phase is the label of the last marker
        before the call ('start' before any marker); plus 'overrun'."""
        if not self.inst:
            return None
        overrun = 0
        for cpu in os.listdir(os.path.join(self.inst, "per_cpu")):
            with open(os.path.join(self.inst, "per_cpu", cpu, "stats")) as f:
                m = re.search(r"^overrun: (\d+)", f.read(), re.M)
                overrun += int(m.group(1)) if m else 0
        phases = {"start": {}}
        phase = "start"
        by_comm = {}
        pat = re.compile(r"^\s*(.+?)-(\d+)\s+\[\d+\].*?: (?:sys_(\w+)\(|tracing_mark_write: BENCH_MARK (\S+))")
        with open(os.path.join(self.inst, "trace"), errors="replace") as f:
            for line in f:
                if line.startswith("#"):
                    continue
                m = pat.match(line)
                if not m:
                    continue
                if m.group(4):
                    phase = m.group(4)
                    phases.setdefault(phase, {})
                    continue
                sc = m.group(3)
                phases[phase][sc] = phases[phase].get(sc, 0) + 1
                if phase == "inject":
                    key = (m.group(1).strip(), sc)
                    by_comm[key] = by_comm.get(key, 0) + 1
        return {"phases": phases, "overrun": overrun,
                "inject_by_comm": {f"{c}:{s}": n for (c, s), n in sorted(by_comm.items())}}

    def remove(self):
        if getattr(self, "cmdlines_saved", None) is not None:
            try:
                with open(self.cmdlines_file, "w") as f:
                    f.write(str(self.cmdlines_saved))
            except OSError:
                pass
            self.cmdlines_saved = None
        if not self.inst:
            return
        inst, self.inst = self.inst, None
        try:
            with open(os.path.join(inst, "tracing_on"), "w") as f:
                f.write("0")
        except OSError:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.rmdir(inst)  # tracefs removes the whole instance
                return
            except OSError:
                time.sleep(0.2)
        log(f"warning: could not remove ftrace instance {inst}")


def diskstats(dev):
    """Cumulative counters of block device `dev` (name as in /proc/diskstats)."""
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            if p[2] == dev:
                v = [int(x) for x in p[3:]]
                return {"write_ios": v[4], "write_bytes": v[6] * SECTOR,
                        "discard_bytes": v[13] * SECTOR if len(v) > 13 else 0,
                        "flushes": v[15] if len(v) > 15 else None}
    raise BenchError(f"device {dev} not in /proc/diskstats")


def device_of(path):
    """The /proc/diskstats name of the block device holding `path`."""
    st = os.stat(path)
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            if int(p[0]) == major and int(p[1]) == minor:
                return p[2]
    raise BenchError(f"no block device for {path} ({major}:{minor})")


def busy_cpu_seconds():
    """CPU seconds spent busy by the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def proc_io(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            return {k: int(v) for k, v in (l.split(": ") for l in f.read().splitlines())}
    except OSError:
        return None


def proc_status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    """Samples, once a second, the summed PSS (proportional set size: shared
    pages split between the processes sharing them) of all processes in a
    cgroup, and keeps the peak; also the largest VmHWM seen in any of them."""

    def __init__(self, cgroup, interval=1.0):
        super().__init__(daemon=True)
        self.cgroup, self.interval = cgroup, interval
        self.peak_pss_kb = 0
        self.peak_hwm_kb = 0
        self.peak_procs = 0
        self._halt = threading.Event()

    def sample(self):
        pids = self.cgroup.pids()
        total = sum(pss_kb(p) for p in pids)
        self.peak_pss_kb = max(self.peak_pss_kb, total)
        self.peak_procs = max(self.peak_procs, len(pids))
        for p in pids:
            self.peak_hwm_kb = max(self.peak_hwm_kb, proc_status_kb(p, "VmHWM") or 0)

    def run(self):
        while not self._halt.wait(self.interval):
            try:
                self.sample()
            except OSError:
                pass

    def stop(self):
        self._halt.set()
        self.join(timeout=5)
        try:
            self.sample()
        except OSError:
            pass


class ScratchFs:
    """A fresh ext4 file system on a loop device (backing file under
    `parent`, direct I/O), so /proc/diskstats of the loop device counts the
    writes of the system under test only: journal, metadata, compaction,
    everything. Inode tables are initialised at mkfs time so no background
    ext4lazyinit writes pollute the counters."""

    def __init__(self, parent, size_bytes):
        self.dir = tempfile.mkdtemp(prefix=f"hikyaku-bench-fs-p{os.getpid()}-", dir=parent)
        os.chmod(self.dir, 0o755)  # the postfix user must reach its queue
        self.image = os.path.join(self.dir, "fs.img")
        self.mnt = os.path.join(self.dir, "mnt")
        self.loop = None
        os.mkdir(self.mnt)
        with open(self.image, "wb") as f:
            f.truncate(size_bytes)
        run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", self.image], timeout=300)
        p = run(["losetup", "--find", "--show", "--direct-io=on", self.image], timeout=30, check=False)
        if p.returncode != 0:  # older util-linux / backing fs without O_DIRECT
            p = run(["losetup", "--find", "--show", self.image], timeout=30)
        self.loop = p.stdout.strip()
        q = run(["losetup", "--list", "--noheadings", "--output", "DIO", self.loop], timeout=30, check=False)
        self.direct_io = q.stdout.strip() == "1"
        if not self.direct_io:
            log(f"warning: {self.loop} without direct I/O: its writes go through the host page cache first")
        run(["mount", "-t", "ext4", self.loop, self.mnt], timeout=60)
        os.chmod(self.mnt, 0o755)
        self.dev = os.path.basename(self.loop)

    def syncfs(self):
        run(["sync", "-f", self.mnt], timeout=300)

    def remove(self):
        if os.path.ismount(self.mnt):
            p = run(["umount", self.mnt], timeout=120, check=False)
            if p.returncode != 0:
                run(["umount", "-l", self.mnt], timeout=60, check=False)
        if self.loop:
            run(["losetup", "-d", self.loop], timeout=30, check=False)
            self.loop = None
        shutil.rmtree(self.dir, ignore_errors=True)


class PlainDir:
    """--no-loop: the spool in a temp dir on an existing file system; the
    device counters then include whatever else writes to that device."""

    def __init__(self, parent):
        self.dir = tempfile.mkdtemp(prefix=f"hikyaku-bench-dir-p{os.getpid()}-", dir=parent)
        os.chmod(self.dir, 0o755)
        self.mnt = self.dir
        self.dev = device_of(self.dir)

    def syncfs(self):
        run(["sync", "-f", self.mnt], timeout=300)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# Systems under test. Each: start(fs, cgroup, tracer) -> port; stop();
# counters() (optional, system-specific); queued() -> count on disk.

POSTFIX_MASTER_CF = """\
# Private benchmark instance: smtpd on loopback, queue manager running, no chroot.
# Mail is put on hold by smtpd_recipient_restrictions, so nothing is delivered.
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

POSTFIX_MAIN_CF = """\
# Private benchmark instance (bench/inject.py). Everything not set here is the
# Debian package's built-in default; in particular Postfix fsyncs every queue
# file before it answers 250 (there is no setting that turns this off).
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
meta_directory = /etc/postfix
myhostname = bench.example
mydomain = bench.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
biff = no
# Accept for any recipient from loopback, and keep every message on the hold
# queue: it stays on disk and nothing is spent on delivery attempts.
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_client_access static:HOLD, permit_mynetworks, reject
# Postfix's flow control pauses cleanup up to in_flow_delay when the queue
# manager falls behind; with delivery held that would throttle injection to
# nothing, so it is off: Postfix gets its best case.
in_flow_delay = 0s
"""


# --- For the benchmarks that measure at the receiver (politeness.py,
# fairness.py) and use this file's systems only to start them.

class NoInstrument:
    """Stands in for the cgroup and ftrace wrappers: nothing is measured on
    the sending side."""

    def wrap(self):
        return ""

    def kill_all(self):
        pass

    def cpu_seconds(self):
        return None


class WorkDir:
    """The file-system argument of the systems' start(): the spool or queue
    directly in the work directory (nothing is measured on disk here). Not
    one level deeper as inject.PlainDir would put it: Postfix's
    public/postlog socket must fit a unix-domain socket name (108 bytes),
    and `postfix start` fails with nothing but a syslog line when it does
    not."""

    def __init__(self, path):
        self.dir = self.mnt = path

    def remove(self):
        pass


def free_port_on(address):
    """A free TCP port on `address` (a loopback address other than 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


class SinkProcess:
    """A fresh `hikyaku sink` on `address` (a free port), started with
    `flags` and a stats file (rewritten every second); its stdout goes to
    sink.out in `workdir`. Ready when its banner line is there (30 s)."""

    def __init__(self, hikyaku, workdir, address, flags=()):
        self.port = free_port_on(address)
        self.stats_path = os.path.join(workdir, "sink-stats.json")
        self.stdout_path = os.path.join(workdir, "sink.out")
        self.out = open(self.stdout_path, "w")
        self.proc = subprocess.Popen(
            [hikyaku, "sink", "--listen", f"{address}:{self.port}", "--stats-file", self.stats_path, *flags],
            stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while "hikyaku sink ready" not in self.output():
            if self.proc.poll() is not None:
                raise BenchError(f"hikyaku sink exited ({self.proc.returncode}): {self.output()[-1000:]}")
            if time.monotonic() > deadline:
                raise BenchError("hikyaku sink not ready within 30s")
            time.sleep(0.05)
        self.started = time.monotonic()

    def output(self):
        if not self.out.closed:
            self.out.flush()
        with open(self.stdout_path) as f:
            return f.read()

    def stats(self):
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def stop(self):
        """Stops the sink (harmless twice); returns its final counters (the
        last JSON line it printed), else the last stats file."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not self.out.closed:
            self.out.close()
        for line in reversed(self.output().splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return self.stats()

class PostfixSystem:
    name = "postfix"

    def __init__(self, args, workdir):
        self.args, self.workdir = args, workdir
        self.conf = None
        self.queue = None
        self.cgroup = None

    def start(self, fs, cgroup, tracer):
        self.port = free_port()
        self.cgroup = cgroup
        self.conf = os.path.join(self.workdir, "postfix-etc")
        os.makedirs(self.conf, exist_ok=True)
        self.queue = os.path.join(fs.mnt, "postfix-queue")
        data = os.path.join(fs.mnt, "postfix-data")
        os.makedirs(self.queue, exist_ok=True)
        os.makedirs(data, exist_ok=True)
        shutil.chown(data, "postfix", "postfix")
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(self.main_cf(self.queue, data))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER_CF.format(port=self.port))
        cmd = cgroup.wrap() + tracer.wrap() + f"exec {nice_prefix(self.args)}postfix -c {self.conf} start"
        p = run(["sh", "-c", cmd], timeout=120, check=False)
        if p.returncode != 0:
            # Postfix reports most start-up problems to syslog only; its
            # check command prints them to stderr.
            chk = run(["postfix", "-c", self.conf, "check"], timeout=60, check=False)
            raise BenchError(f"postfix start failed: {p.stdout}{p.stderr}{chk.stderr}".strip())
        wait_banner(self.port, time.monotonic() + 60, what="postfix")
        return self.port

    def main_cf(self, queue, data):
        """The instance's main.cf (bench/relay.py overrides it to deliver)."""
        return POSTFIX_MAIN_CF.format(queue=queue, data=data)

    def main_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def queued(self):
        n = 0
        for sub in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt"):
            d = os.path.join(self.queue, sub)
            for _, _, files in os.walk(d):
                n += len(files)
        return n

    def counters(self):
        return {}

    def stop(self, crash=False):
        if crash and self.cgroup:
            self.cgroup.kill_all()
        elif self.conf:
            run(["postfix", "-c", self.conf, "stop"], timeout=60, check=False)

    def describe(self):
        p = run(["postconf", "-d", "mail_version"], timeout=10, check=False)
        return f"Postfix {p.stdout.split('=')[-1].strip()} (Debian package), private instance"


class HikyakuSystem:
    name = "hikyaku"

    def __init__(self, args, workdir):
        self.args, self.workdir = args, workdir
        self.proc = None
        self.log = None

    def start(self, fs, cgroup, tracer):
        if not os.access(self.args.hikyaku, os.X_OK):
            raise BenchError(f"hikyaku binary not found at {self.args.hikyaku} "
                             "(cmake --preset release && cmake --build --preset release)")
        self.port = free_port()
        self.http_port = free_port()
        self.spool = os.path.join(fs.mnt, "spool")
        cfg = self.cfg = os.path.join(self.workdir, "hikyaku.toml")
        # The events log is not the spool: it goes outside the measured file
        # system (Postfix's equivalent, its syslog lines, is not counted either);
        # its size is reported separately.
        self.events = os.path.join(self.workdir, "events.jsonl")
        with open(cfg, "w") as f:
            f.write(f"""# generated by bench/inject.py
[server]
hostname = "bench.example"

[spool]
path = "{self.spool}"
sync = "group"
{"".join(line + chr(10) for line in getattr(self.args, "spool_set", []))}
[smtp_in]
listen = ["127.0.0.1:{self.port}"]
relay_networks = ["127.0.0.0/8"]

[http]
listen = "127.0.0.1:{self.http_port}"

[events]
path = "{self.events}"
{self.extra_config()}""")
        self.log = open(os.path.join(self.workdir, "hikyaku.log"), "w")
        cmd = cgroup.wrap() + tracer.wrap() + f'exec {nice_prefix(self.args)}"$0" serve -c "$1"'
        self.proc = subprocess.Popen(["sh", "-c", cmd, self.args.hikyaku, cfg],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        try:
            wait_banner(self.port, time.monotonic() + 60, alive=lambda: self.proc.poll() is None,
                        what="hikyaku")
        except BenchError:
            self.log.flush()
            with open(self.log.name) as f:
                tail = f.read()[-3000:]
            rc = self.proc.poll()
            status = f"exited with status {rc}" if rc is not None else "still running"
            raise BenchError(f"hikyaku did not come up ({status}); its output:\n{tail}")
        return self.port

    def extra_config(self):
        """TOML appended to the generated configuration (bench/relay.py
        replaces it with its [delivery] and [[route]] tables). Injection
        alone: hikyaku holds the mail, as the Postfix under test does."""
        return "\n[delivery]\nhold = true\n"

    def main_pid(self):
        return self.proc.pid if self.proc else None

    def stats(self):
        url = f"http://127.0.0.1:{self.http_port}/api/v1/stats"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read().decode())
        except (OSError, ValueError):
            return None

    def counters(self):
        s = self.stats()
        spool = (s or {}).get("spool") or {}
        # appends, syncs, commit_groups (and whatever else the spool counts,
        # e.g. WAL and blob bytes): reported as deltas over the run.
        return {k: v for k, v in spool.items() if isinstance(v, int) and not isinstance(v, bool)}

    def queued(self):
        """Recipients in the spool, counted by `hikyaku spool list` with the
        daemon stopped (one JSON line per pending recipient)."""
        p = run([self.args.hikyaku, "spool", "list", "-c", self.cfg], timeout=600, check=False)
        if p.returncode != 0:
            log(f"warning: hikyaku spool list failed ({p.returncode}): {p.stderr.strip()[-500:]}")
            return None
        return sum(1 for line in p.stdout.splitlines() if line.strip())

    def stop(self, crash=False):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log("warning: hikyaku ignored SIGTERM for 60s; killing it")
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.log:
            self.log.close()
            self.log = None

    def describe(self):
        rev = run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], timeout=10, check=False).stdout.strip()
        dirty = run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                    timeout=30, check=False).stdout.strip()
        rev += "+uncommitted changes" if rev and dirty else ""
        built = "?" if not os.path.exists(self.args.hikyaku) else time.strftime("%Y-%m-%d %H:%M", time.localtime(os.stat(self.args.hikyaku).st_mtime))
        return (f"hikyaku, tree at {rev or '?'} ({os.path.relpath(self.args.hikyaku, REPO)} "
                f"built {built}), sync = \"group\"")


# --------------------------------------------------------------------------
# One trial.

def wait_quiet(fs, pid, limit_s, quiet_s=3.0, poll=0.5):
    """Waits until neither the device nor the daemon has written for
    `quiet_s` seconds (background flushes and compactions finished), at most
    `limit_s` seconds. Returns the seconds waited."""
    t0 = time.monotonic()
    last = None
    quiet_since = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        cur = (diskstats(fs.dev)["write_bytes"], (proc_io(pid) or {}).get("write_bytes") if pid else None)
        if cur != last:
            last = cur
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
        time.sleep(poll)
    return time.monotonic() - t0


def trial(system, args, message_size, trial_no):
    tag = f"{system.name}-p{os.getpid()}-{trial_no}"
    workdir = tempfile.mkdtemp(prefix=f"hikyaku-bench-{system.name}-p{os.getpid()}-", dir=args.tmpdir)
    fs = cgroup = tracer = sampler = load = None
    started = False
    system.workdir = workdir
    result = {"system": system.name, "trial": trial_no, "messages": args.messages}
    try:
        if args.no_loop:
            fs = PlainDir(args.tmpdir)
        else:
            fs_size = max(2 << 30, args.messages * (args.size + 2048) * 12)
            fs = ScratchFs(args.tmpdir, fs_size)
        cgroup = Cgroup(f"hikyaku-bench-{tag}")
        tracer = SyncTracer(f"hikyaku-bench-{tag}", buffer_kb=max(8192, args.messages // 8))
        load = Cgroup(f"hikyaku-bench-{tag}-load")

        log(f"{system.name}: starting (trial {trial_no}, fs {fs.mnt} on {fs.dev})")
        started = True
        port = system.start(fs, cgroup, tracer)
        pid = system.main_pid()
        time.sleep(1.0)  # let start-up writes drain before the baseline
        fs.syncfs()
        time.sleep(0.5)
        if args.no_loop:
            # A shared device: what others write while the system idles is
            # in its counters too. Measured here so the report can bound it.
            i0 = diskstats(fs.dev)["write_bytes"]
            time.sleep(2.0)
            result["idle_device_write_Bps"] = (diskstats(fs.dev)["write_bytes"] - i0) / 2.0

        sampler = MemorySampler(cgroup)
        sampler.sample()
        sampler.start()
        # Per-process I/O accounting only means something for a single
        # long-lived daemon; Postfix's writers are many short-lived children.
        io_pid = pid if system.name == "hikyaku" else None
        d0, io0, cpu0 = diskstats(fs.dev), proc_io(io_pid) if io_pid else None, cgroup.cpu_seconds()
        busy0 = busy_cpu_seconds()
        c0 = system.counters()
        tracer.mark("inject")
        log(f"{system.name}: injecting {args.messages} x {args.size}-byte messages, "
            f"{args.sessions} sessions, on port {port}")
        cmd = load.wrap() + f'exec {nice_prefix(args)}"$@"'
        t0 = time.monotonic()
        try:
            p = subprocess.run(["sh", "-c", cmd, "sh"] + smtp_source_args(args, port, args.messages),
                               capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            load.kill_all()
            raise BenchError(f"smtp-source did not finish within {args.timeout}s")
        wall = time.monotonic() - t0
        tracer.mark("settle")
        if p.returncode != 0:
            raise BenchError(f"smtp-source failed ({p.returncode}) against {system.name}: "
                             f"{p.stderr.strip()[-2000:]}")
        d1, cpu1 = diskstats(fs.dev), cgroup.cpu_seconds()
        log(f"{system.name}: {args.messages} messages acknowledged in {wall:.1f}s "
            f"({args.messages / wall:.0f}/s); waiting for writes to settle")
        waited = wait_quiet(fs, pid, limit_s=args.settle_timeout)
        fs.syncfs()
        time.sleep(0.5)
        tracer.mark("stop")
        d2, io2, cpu2 = diskstats(fs.dev), proc_io(io_pid) if io_pid else None, cgroup.cpu_seconds()
        busy2 = busy_cpu_seconds()
        with open("/proc/loadavg") as f:
            result["loadavg_after"] = " ".join(f.read().split()[:3])
        c2 = system.counters()
        sampler.stop()
        # hikyaku is one process: its VmHWM. Postfix is many: the largest
        # VmHWM of any of its processes (the summed PSS column covers all).
        hwm_main = proc_status_kb(pid, "VmHWM") if pid and system.name == "hikyaku" else None

        system.stop(crash=args.crash)
        started = False
        fs.syncfs()
        d3 = diskstats(fs.dev)
        # Count what is on disk only now, with the system stopped (killed
        # with SIGKILL under --crash): every acknowledged message must be there.
        queued = system.queued()
        tr = tracer.counts()

        n = args.messages

        def per(a, b, key):
            if a is None or b is None or a.get(key) is None or b.get(key) is None:
                return None
            return (b[key] - a[key]) / n

        fsyncs = None
        sfr = None
        if tr:
            ph = dict(tr["phases"].get("inject", {}))
            for k, v in tr["phases"].get("settle", {}).items():
                ph[k] = ph.get(k, 0) + v
            fsyncs = (ph.get("fsync", 0) + ph.get("fdatasync", 0)) / n
            sfr = ph.get("sync_file_range", 0) / n
            result["sync_calls"] = ph
            result["sync_calls_inject_by_comm"] = tr["inject_by_comm"]
            result["sync_calls_stop"] = tr["phases"].get("stop", {})
            if tr["overrun"]:
                log(f"warning: ftrace buffer overran by {tr['overrun']} events; fsync counts are low")
                result["trace_overrun"] = tr["overrun"]
        counters = {}
        for k in c0 or {}:
            if c0.get(k) is not None and (c2 or {}).get(k) is not None:
                counters[k] = c2[k] - c0[k]
        result.update({
            "wall_s": wall,
            "msgs_per_s": n / wall,
            "settle_s": waited,
            "disk_bytes_per_msg_inject": per(d0, d1, "write_bytes"),
            "disk_bytes_per_msg": per(d0, d2, "write_bytes"),
            "disk_bytes_per_msg_with_stop": per(d0, d3, "write_bytes"),
            "disk_write_ios_per_msg": per(d0, d2, "write_ios"),
            "device_flushes_per_msg": per(d0, d2, "flushes"),
            "proc_write_bytes_per_msg": per(io0, io2, "write_bytes"),
            "fsyncs_per_msg": fsyncs,
            "sync_file_range_per_msg": sfr,
            "peak_pss_mib": sampler.peak_pss_kb / 1024,
            "peak_hwm_mib": (hwm_main if hwm_main else sampler.peak_hwm_kb) / 1024,
            "peak_processes": sampler.peak_procs,
            "cpu_s": (cpu2 - cpu0) if cpu0 is not None and cpu2 is not None else None,
            "cpu_s_inject": (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
            "load_cpu_s": load.cpu_seconds(),
            # Everything else the machine did meanwhile (other jobs sharing
            # the cores): a run with a large value here is not trustworthy.
            "other_cpu_s": (busy2 - busy0 - (cpu2 - cpu0) - (load.cpu_seconds() or 0))
                           if cpu0 is not None and cpu2 is not None else None,
            "queued": queued,
            "counters": counters,
            "message_size": message_size,
        })
        if system.name == "hikyaku" and os.path.exists(getattr(system, "events", "")):
            result["events_bytes_per_msg"] = os.path.getsize(system.events) / n
        if queued is not None and queued != n:
            log(f"WARNING: {system.name} holds {queued} messages, expected {n}")
        return result
    finally:
        if sampler:
            sampler.stop()
        if started:
            try:
                system.stop()
            except Exception as e:  # keep cleaning up
                log(f"warning: stopping {system.name}: {e}")
        release_trial(resources=(cgroup, load, tracer), fs=fs, workdir=workdir, keep=args.keep)


def refuse_stale_build(binary):
    """Refuses a binary of this tree's build directories that its build
    system would rebuild (ninja's dry run has work to do for it): a link
    that missed a change measures code that is no longer in the tree, under
    the tree's revision. Binaries elsewhere (copies kept for an A/B
    comparison) are taken as they are."""
    build_root = os.path.join(REPO, "build") + os.sep
    if not binary.startswith(build_root) or not os.path.exists(binary):
        return
    build_dir = os.path.join(REPO, "build", binary[len(build_root):].split(os.sep)[0])
    target = os.path.relpath(binary, build_dir)
    if not shutil.which("ninja") or not os.path.exists(os.path.join(build_dir, "build.ninja")):
        log(f"warning: cannot tell whether {os.path.relpath(binary, REPO)} is up to date (no ninja build)")
        return
    p = run(["ninja", "-C", build_dir, "-n", target], timeout=120, check=False)
    if p.returncode != 0 or "no work to do" not in p.stdout:
        raise BenchError(f"{os.path.relpath(binary, REPO)} is not up to date with the tree: rebuild it first "
                         f"(cmake --build {os.path.relpath(build_dir, REPO)} --target hikyaku)")


def release_trial(resources, fs, workdir, keep):
    """The common end of a trial's cleanup (here and in bench/relay.py):
    removes each resource that was made (cgroups, load generators, tracers),
    one failure not stopping the rest, then the scratch file system and the
    work directory (kept with --keep)."""
    for res in resources:
        if res:
            try:
                res.remove()
            except Exception as e:  # keep cleaning up
                log(f"warning: cleanup: {e}")
    if fs:
        fs.remove()
    if keep:
        log(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------
# Leftovers of a run that was killed with SIGKILL (no chance to clean up).
# Every resource name carries "-p<pid>-" of the driver that made it.

def stale_resources(tmpdir):
    def dead(name):
        m = re.search(r"-p(\d+)-", name)
        return bool(m) and not os.path.exists(f"/proc/{m.group(1)}")
    found = []
    for root, kind in ((CPUACCT_ROOT, "cgroup"),
                       *((os.path.join(t, "instances"), "ftrace") for t in TRACEFS_CANDIDATES)):
        if os.path.isdir(root):
            found += [(kind, os.path.join(root, n)) for n in sorted(os.listdir(root))
                      if n.startswith("hikyaku-bench-") and dead(n)]
    if os.path.isdir(tmpdir):
        found += [("dir", os.path.join(tmpdir, n)) for n in sorted(os.listdir(tmpdir))
                  if n.startswith("hikyaku-bench-") and dead(n)]
    return found


def cleanup_stale(tmpdir):
    """Removes what dead benchmark runs left: kills the processes in their
    cgroups (processes those runs started), unmounts their scratch file
    systems, detaches their loop devices, removes cgroups, ftrace instances
    and directories."""
    for kind, path in stale_resources(tmpdir):
        log(f"removing stale {kind} {path}")
        if kind == "cgroup":
            c = Cgroup.__new__(Cgroup)
            c.path = path
            c.remove()
        elif kind == "ftrace":
            try:
                os.rmdir(path)
            except OSError as e:
                log(f"warning: {e}")
        else:
            mnt = os.path.join(path, "mnt")
            if os.path.ismount(mnt):
                if run(["umount", mnt], timeout=120, check=False).returncode != 0:
                    run(["umount", "-l", mnt], timeout=60, check=False)
            img = os.path.join(path, "fs.img")
            if os.path.exists(img):
                p = run(["losetup", "-j", img], timeout=30, check=False)
                for line in p.stdout.splitlines():
                    run(["losetup", "-d", line.split(":")[0]], timeout=30, check=False)
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------
# Report.

COLUMNS = [
    ("msgs_per_s", "msgs/s", "{:.0f}"),
    ("wall_s", "wall s", "{:.1f}"),
    ("disk_bytes_per_msg", "disk B/msg", "{:.0f}"),
    ("disk_x_size", "× msg size", "{:.2f}"),
    ("disk_bytes_per_msg_with_stop", "disk B/msg incl. stop", "{:.0f}"),
    ("proc_write_bytes_per_msg", "process write B/msg", "{:.0f}"),
    ("fsyncs_per_msg", "fsyncs/msg", "{:.3f}"),
    ("sync_file_range_per_msg", "sync_file_range/msg", "{:.3f}"),
    ("device_flushes_per_msg", "device flushes/msg", "{:.3f}"),
    ("peak_hwm_mib", "peak RSS MiB", "{:.1f}"),
    ("peak_pss_mib", "peak PSS MiB (all procs)", "{:.1f}"),
    ("cpu_s", "CPU s", "{:.1f}"),
    ("load_cpu_s", "smtp-source CPU s", "{:.1f}"),
    ("other_cpu_s", "other CPU s", "{:.1f}"),
    ("queued", "on disk", "{}"),
]


def median_result(results):
    out = dict(results[0])
    for key, _, _ in COLUMNS:
        vals = [r.get(key) for r in results if r.get(key) is not None]
        out[key] = statistics.median(vals) if vals else None
    out["trials"] = len(results)
    return out


def fmt(v, f):
    if v is None:
        return "n/a"
    try:
        return f.format(v)
    except (ValueError, TypeError):
        return str(v)


PER_TRIAL = [("msgs_per_s", "msgs/s", "{:.0f}"), ("disk_x_size", "× msg size", "{:.2f}"),
             ("fsyncs_per_msg", "fsyncs/msg", "{:.3f}"), ("cpu_s", "CPU s", "{:.1f}"),
             ("other_cpu_s", "other CPU s", "{:.1f}"), ("loadavg_after", "load avg after", "{}")]


def paired_rate_ratios(results):
    """hikyaku msgs/s ÷ Postfix msgs/s per trial: each hikyaku trial paired
    with the Postfix trial run just before it, under the same conditions."""
    return [h["msgs_per_s"] / p["msgs_per_s"]
            for p, h in zip(results.get("postfix", []), results.get("hikyaku", []))]


def render(summary, meta, results):
    lines = []
    lines.append(f"# Injection benchmark, {meta['date']}")
    lines.append("")
    lines.append(f"- command: `{meta['command']}`")
    body = ("base64 of random bytes, as in an attachment" if meta["body"] == "random"
            else "smtp-source's repeated 'X' filler lines")
    lines.append(f"- load: {meta['messages']} messages, body {meta['size']} B of {body} "
                 f"({meta['message_size']} B on the wire with headers; zlib -6 shrinks it to "
                 f"{meta['zlib_ratio']:.0%}), {meta['sessions']} sessions, "
                 "smtp-source -d (connection reuse), one recipient each")
    lines.append(f"- trials per system: {meta['repeat']} (values are medians)")
    if meta.get("crash"):
        lines.append("- each system was stopped with SIGKILL (--crash) before its stored messages were counted")
    if meta.get("nice") is not None:
        lines.append(f"- both systems and smtp-source ran at niceness {meta['nice']}")
    lines.append(f"- machine: {meta['machine']}; load average before the run: {meta['loadavg']}")
    lines.append(f"- storage: {meta['storage']}")
    for s in summary:
        lines.append(f"- {s['system']}: {s['describe']}")
    lines.append("")
    head = ["system"] + [c[1] for c in COLUMNS]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for s in summary:
        lines.append("| " + " | ".join([s["system"]] + [fmt(s.get(k), f) for k, _, f in COLUMNS]) + " |")
    by = {s["system"]: s for s in summary}
    if "postfix" in by and "hikyaku" in by:
        h, p = by["hikyaku"], by["postfix"]
        lines.append("")
        lines.append("Ratios and targets (hikyaku / Postfix):")
        lines.append("")

        def ratio(k):
            return (h[k] / p[k]) if h.get(k) and p.get(k) else None
        r = ratio("msgs_per_s")
        lines.append(f"- acceptance rate: {fmt(r, '{:.1f}')}× Postfix (target ≥ 10×): "
                     f"{'PASS' if r and r >= 10 else 'FAIL'}")
        pr = paired_rate_ratios(results)
        if len(pr) > 1:
            lines.append(f"  (per trial pair: {', '.join(f'{x:.1f}×' for x in pr)}; "
                         f"median {statistics.median(pr):.1f}×)")
        x = h.get("disk_x_size")
        lines.append(f"- disk bytes per message: {fmt(x, '{:.2f}')}× the message size "
                     f"(Postfix {fmt(p.get('disk_x_size'), '{:.2f}')}×; target ≤ 2×): "
                     f"{'PASS' if x is not None and x <= 2 else 'FAIL'}")
        f_ = h.get("fsyncs_per_msg")
        lines.append(f"- fsyncs per message: {fmt(f_, '{:.3f}')} (Postfix {fmt(p.get('fsyncs_per_msg'), '{:.3f}')}; "
                     f"target ≤ 0.05): {'PASS' if f_ is not None and f_ <= 0.05 else 'FAIL'}")
        lines.append(f"- CPU seconds: {fmt(ratio('cpu_s'), '{:.2f}')}×; peak memory (PSS): "
                     f"{fmt(ratio('peak_pss_mib'), '{:.2f}')}×")
        q = h.get("queued")
        lines.append(f"- every acknowledged message stored: hikyaku {fmt(q, '{}')} / {meta['messages']}, "
                     f"Postfix {fmt(p.get('queued'), '{}')} / {meta['messages']}")
    if any(len(rs) > 1 for rs in results.values()):
        lines.append("")
        lines.append("Per trial (in the order run):")
        lines.append("")
        lines.append("| trial | system | " + " | ".join(c[1] for c in PER_TRIAL) + " |")
        lines.append("|" + "---|" * (len(PER_TRIAL) + 2))
        n = max(len(rs) for rs in results.values())
        for i in range(n):
            for name, rs in results.items():
                if i < len(rs):
                    lines.append(f"| {i + 1} | {name} | "
                                 + " | ".join(fmt(rs[i].get(k), f) for k, _, f in PER_TRIAL) + " |")
        lines.append("")
    for s in summary:
        idle = [r["idle_device_write_Bps"] for r in results[s["system"]] if "idle_device_write_Bps" in r]
        if idle:
            lines.append(f"- {s['system']}: the shared device took {max(idle):.0f} B/s at most from other writers "
                         f"in the 2 s before a trial (counted in disk B/msg at that rate: "
                         f"≤ {max(idle) / max(1.0, s.get('msgs_per_s') or 1.0):.1f} B/msg during injection)")
        last = results[s["system"]][-1]
        if last.get("counters"):
            lines.append(f"- {s['system']} self-reported spool counters over the run (last trial): "
                         + ", ".join(f"{k} = {v}" for k, v in last["counters"].items()))
        if last.get("sync_calls_inject_by_comm"):
            lines.append(f"- {s['system']} sync calls during injection by process name (last trial): "
                         + ", ".join(f"{k} {v}" for k, v in last["sync_calls_inject_by_comm"].items()))
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["postfix", "hikyaku"])
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--quick", action="store_true", help="10 000 messages")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--size", type=int, default=5120, help="body bytes per message")
    ap.add_argument("--body", choices=["random", "filler"], default="random",
                    help="random: base64 of random bytes (default, barely compressible); "
                         "filler: smtp-source's own repeated 'X' lines (-l)")
    ap.add_argument("--hikyaku", default=os.path.join(REPO, "build/release/src/app/hikyaku"))
    ap.add_argument("--spool-set", action="append", default=[], metavar="KEY=VALUE",
                    help='a line added to hikyaku\'s [spool] table, e.g. \'commit_delay = "0s"\' (repeatable)')
    ap.add_argument("--tmpdir", default="/var/tmp", help="where scratch file systems and work dirs go")
    ap.add_argument("--no-loop", action="store_true",
                    help="no scratch loop file system: device counters include other writers")
    ap.add_argument("--timeout", type=float, help="seconds for one injection (default 120 + messages/50)")
    ap.add_argument("--settle-timeout", type=float, default=300)
    ap.add_argument("--out", default=os.path.join(REPO, "bench/results"))
    ap.add_argument("--keep", action="store_true", help="keep work dirs (not the scratch fs)")
    ap.add_argument("--cleanup-stale", action="store_true",
                    help="remove what killed runs left behind (mounts, loop devices, cgroups, processes) and exit")
    ap.add_argument("--nice", type=int, metavar="N",
                    help="run both systems and smtp-source at niceness N (e.g. -10 on a machine shared "
                         "with other jobs; the same for both sides)")
    ap.add_argument("--crash", action="store_true",
                    help="stop each system with SIGKILL instead of a clean stop before counting what it stored")
    ap.add_argument("--render", metavar="JSON",
                    help="rewrite the markdown of an earlier run from its JSON and exit")
    args = ap.parse_args()
    if args.render:
        return rerender(args.render)
    if args.quick:
        args.messages = 10000
    if args.timeout is None:
        args.timeout = 120 + args.messages / 50
    args.hikyaku = os.path.abspath(args.hikyaku)
    refuse_stale_build(args.hikyaku)
    if os.geteuid() != 0:
        raise BenchError("run as root (loop mounts, cgroups, ftrace, a private Postfix)")
    if args.cleanup_stale:
        cleanup_stale(args.tmpdir)
        return 0
    stale = stale_resources(args.tmpdir)
    if stale:
        log(f"warning: {len(stale)} leftovers of earlier runs, killed or --keep (e.g. {stale[0][1]}); "
            "remove them with bench/inject.sh --cleanup-stale")
    for tool in ("smtp-source", "postfix", "mkfs.ext4", "losetup", "mount"):
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found (apt-get install postfix e2fsprogs mount)")

    def on_signal(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    systems = [PostfixSystem, HikyakuSystem]
    if args.only:
        systems = [c for c in systems if c.name == args.only]

    msg_dir = tempfile.mkdtemp(prefix=f"hikyaku-bench-msg-p{os.getpid()}-", dir=args.tmpdir)
    try:
        return run_all(args, systems, msg_dir)
    finally:
        shutil.rmtree(msg_dir, ignore_errors=True)


def summarize(results, describe):
    summary = []
    for name, rs in results.items():
        m = median_result(rs)
        m["describe"] = describe[name]
        summary.append(m)
    return summary


def rerender(path):
    with open(path) as f:
        data = json.load(f)
    md = render(summarize(data["trials"], data["describe"]), data["meta"], data["trials"])
    print(md)
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write(md)
    return 0


def run_all(args, systems, msg_dir):
    args.message_file = os.path.join(msg_dir, "message.eml")
    os.chmod(msg_dir, 0o755)
    write_message_file(args.message_file, args.size)
    message_size, sample, zratio = measure_message_size(args)
    log(f"message on the wire: {message_size} bytes (zlib -6 compresses it to {zratio:.0%})")
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    results = {c.name: [] for c in systems}
    describe = {}
    for i in range(1, args.repeat + 1):
        for cls in systems:   # alternate systems so drift hits both alike
            sysobj = cls(args, args.tmpdir)
            describe[cls.name] = sysobj.describe()
            r = trial(sysobj, args, message_size, i)
            r["disk_x_size"] = r["disk_bytes_per_msg"] / message_size if r.get("disk_bytes_per_msg") else None
            results[cls.name].append(r)
            log(f"{cls.name} trial {i}: " + ", ".join(
                f"{lbl} {fmt(r.get(k), f)}" for k, lbl, f in COLUMNS))

    summary = summarize(results, describe)
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    now = datetime.datetime.now()
    meta = {
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "command": "bench/inject.sh " + " ".join(sys.argv[1:]),
        "messages": args.messages, "size": args.size, "sessions": args.sessions,
        "message_size": message_size, "repeat": args.repeat,
        "body": args.body, "zlib_ratio": zratio, "nice": args.nice, "crash": args.crash,
        "machine": f"{os.cpu_count()} × {cpu}, {round(os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30)} GiB, "
                   f"Linux {platform.release()}",
        "loadavg": loadavg,
        "storage": ("fresh ext4 (defaults, data=ordered) on a loop device with direct I/O, backing file on "
                    f"{device_of(args.tmpdir)}; counters from /proc/diskstats of the loop device"
                    if not args.no_loop else f"{args.tmpdir} on {device_of(args.tmpdir)} (shared device)"),
    }
    md = render(summary, meta, results)
    print(md)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "inject-" + now.strftime("%Y%m%d-%H%M%S"))
    with open(stem + ".md", "w") as f:
        f.write(md)
    with open(stem + ".json", "w") as f:
        json.dump({"meta": meta, "describe": describe, "trials": results,
                   "sample_message_head": sample.decode("latin-1")},
                  f, indent=1, default=str)
    log(f"wrote {stem}.md and {stem}.json")
    failed = [s["system"] for s in summary if s.get("queued") is not None and s["queued"] != args.messages]
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
