# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared helpers of the benchmark scripts (not a benchmark itself).

Standard library only: the accelerator choice, machine facts for the
reports, statistics, a QEMU process that lives in its own process group
and a lean QMP client whose fast path sends pre-encoded commands, so
that a round trip measures QEMU rather than the client.
"""

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time


def accel():
    """KVM if /dev/kvm can be opened read-write, TCG otherwise."""
    try:
        fd = os.open('/dev/kvm', os.O_RDWR)
        os.close(fd)
        return 'kvm'
    except OSError:
        return 'tcg'


def version(binary):
    out = subprocess.run([binary, '--version'], capture_output=True,
                         text=True).stdout
    return out.splitlines()[0] if out else '?'


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or '?'


def machine_facts(acc):
    """One markdown paragraph describing the machine and the run."""
    load = os.getloadavg()
    return ('Machine: %d cores (%s), %s, Linux %s, %d MiB RAM, '
            'Python %s; accelerator **%s**; load average at the start '
            '%.2f; run started %s UTC.' % (
                os.cpu_count(), cpu_model(), platform.machine(),
                platform.release(), mem_mib(), platform.python_version(),
                acc, load[0], time.strftime('%Y-%m-%d %H:%M',
                                            time.gmtime())))


def mem_mib():
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemTotal:'):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def binaries_line(stock, series):
    return 'stock: `%s` (%s); series: `%s` (%s + series)' % (
        stock, version(stock), series, version(series))


def percentile(values, p):
    """Nearest-rank percentile of a list (p in 0..100)."""
    v = sorted(values)
    if not v:
        return float('nan')
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def median(values):
    return statistics.median(values) if values else float('nan')


def fmt3(v):
    """A number with about three significant digits, no exponent."""
    if v != v:
        return '-'
    a = abs(v)
    if a >= 100:
        return '%.0f' % v
    if a >= 10:
        return '%.1f' % v
    if a >= 1:
        return '%.2f' % v
    return '%.3f' % v


def spread(values, fmt=fmt3):
    """'median (min-max)' of a list; fmt is a function or a % format."""
    if not callable(fmt):
        fmt = (lambda f: lambda v: f % v)(fmt)
    if not values:
        return '-'
    if len(values) == 1:
        return fmt(values[0])
    return '%s (%s-%s)' % (fmt(median(values)), fmt(min(values)),
                           fmt(max(values)))


def ratio(a, b, fmt='%.3f'):
    if not b or a != a or b != b:
        return '-'
    return fmt % (a / b)


def ram_size_arg(gib):
    """A -m / size= value for a RAM size in GiB (fractions allowed)."""
    mib = int(round(gib * 1024))
    if mib < 16:
        raise ValueError('RAM size too small: %r GiB' % gib)
    return '%dM' % mib, mib << 20


def write_report(text, out):
    print(text)
    if out:
        d = os.path.dirname(os.path.abspath(out))
        os.makedirs(d, exist_ok=True)
        with open(out, 'w') as f:
            f.write(text)


def arg_parser(reps):
    """The options of a benchmark of the series against stock: --series,
    --stock, --reps (default @reps), --out"""
    ap = argparse.ArgumentParser()
    ap.add_argument('--series', required=True)
    ap.add_argument('--stock', required=True)
    ap.add_argument('--reps', type=int, default=reps)
    ap.add_argument('--out')
    return ap


def exit_on_sigterm():
    """Turn SIGTERM into SystemExit, so that finally blocks clean up."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


class Monitor:
    """A QMP client on a UNIX socket; generous timeouts by default."""

    def __init__(self, path, timeout=120.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.file = self.sock.makefile('rb')
        greeting = self.file.readline()
        if b'"QMP"' not in greeting:
            raise RuntimeError('no QMP greeting: %r' % greeting)
        self.cmd('qmp_capabilities')

    def raw(self, data):
        """Send pre-encoded bytes; return the reply line (bytes)."""
        self.sock.sendall(data)
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError('QMP connection closed')
            if line.startswith((b'{"return"', b'{"error"')):
                return line
            if 'event' not in json.loads(line):
                return line

    def cmd(self, name, args=None):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        resp = json.loads(self.raw(json.dumps(msg).encode() + b'\n'))
        if 'error' in resp:
            raise RuntimeError('%s: %s' % (name, resp['error']))
        return resp['return']

    def close(self):
        for o in (self.file, self.sock):
            try:
                o.close()
            except OSError:
                pass


def encode(name, args=None):
    msg = {'execute': name}
    if args:
        msg['arguments'] = args
    return json.dumps(msg, separators=(',', ':')).encode() + b'\n'


class Qemu:
    """A QEMU process in its own process group, with a QMP socket.

    The process is started with -run-with exit-with-parent=on, so it
    does not outlive this script even when the script is killed.
    """

    def __init__(self, binary, args, tmpdir, name, acc):
        self.name = name
        self.qmp_path = os.path.join(tmpdir, name + '.qmp')
        self.log_path = os.path.join(tmpdir, name + '.log')
        self.args = [binary, '-nodefaults', '-display', 'none',
                     '-accel', acc, '-run-with', 'exit-with-parent=on',
                     '-qmp', 'unix:%s,server=on,wait=off' % self.qmp_path]
        self.args += list(args)
        self.proc = None
        self.mon = None

    def start(self, timeout=60.0):
        with open(self.log_path, 'w') as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                         stdout=log,
                                         stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError('%s exited with %d: %s' % (
                    self.name, self.proc.returncode, self.output()))
            try:
                self.mon = Monitor(self.qmp_path)
                return self
            except (ConnectionRefusedError, FileNotFoundError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError('%s: no QMP socket' % self.name)
            time.sleep(0.01)

    def cmd(self, name, args=None):
        return self.mon.cmd(name, args)

    def output(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ''

    def stop(self, timeout=20.0):
        """Quit politely if possible; kill the process group otherwise."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None and self.mon is not None:
                try:
                    self.mon.sock.settimeout(5)
                    self.mon.cmd('quit')
                except (OSError, EOFError, RuntimeError, ValueError):
                    pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        finally:
            if self.proc.poll() is None:    # not reaped: the group is ours
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self.proc.wait()
            if self.mon is not None:
                self.mon.close()
            self.proc = None


def stop_all(qemus):
    """Stop every QEMU of a list, even if stopping one raises."""
    err = None
    for q in qemus:
        try:
            q.stop()
        except BaseException as e:      # keep stopping the others
            err = err or e
    if err is not None:
        raise err


def die(msg):
    print('error: ' + msg, file=sys.stderr)
    sys.exit(1)
