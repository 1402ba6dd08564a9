# SPDX-License-Identifier: GPL-2.0-or-later
"""A small QMP client and QEMU launcher for the project's tests.

No dependency beyond the Python standard library: the tests drive the
built binary over a real QMP UNIX socket, as a management tool would.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


class QMPError(Exception):
    def __init__(self, cmd, error):
        self.cmd = cmd
        self.error_class = error.get('class')
        self.desc = error.get('desc', '')
        super().__init__('%s: %s: %s' % (cmd, self.error_class, self.desc))


class QMP:
    """A QMP connection over a UNIX socket."""

    def __init__(self, path, timeout=60.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile('r', encoding='utf-8')
        self.events = []
        self.greeting = self._read()
        if 'QMP' not in self.greeting:
            raise RuntimeError('no QMP greeting: %r' % self.greeting)
        self.cmd('qmp_capabilities')

    def _read(self):
        line = self.file.readline()
        if not line:
            raise EOFError('QMP connection closed')
        return json.loads(line)

    def send(self, name, args=None):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.sock.sendall(json.dumps(msg).encode() + b'\n')

    def recv_response(self):
        while True:
            resp = self._read()
            if 'event' in resp:
                self.events.append(resp)
                continue
            return resp

    def cmd_raw(self, name, args=None):
        self.send(name, args)
        return self.recv_response()

    def cmd(self, name, args=None, **kwargs):
        if args is None:
            args = {}
        args = dict(args, **{k.replace('_', '-'): v
                             for k, v in kwargs.items()})
        resp = self.cmd_raw(name, args)
        if 'error' in resp:
            raise QMPError(name, resp['error'])
        return resp['return']

    def hmp(self, line):
        return self.cmd('human-monitor-command', {'command-line': line})

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


class VM:
    """A QEMU process with a QMP socket in a private temporary directory."""

    def __init__(self, binary, args=(), name='vm', tmpdir=None,
                 machine='q35', env=None):
        self.binary = binary
        self.env = env
        self.name = name
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix='qemu-series-')
        self.own_tmpdir = tmpdir is None
        self.qmp_path = os.path.join(self.tmpdir, name + '.qmp')
        self.log_path = os.path.join(self.tmpdir, name + '.log')
        self.args = [binary, '-nodefaults', '-display', 'none',
                     '-accel', 'tcg', '-M', machine, '-m', '64M',
                     '-qmp', 'unix:%s,server=on,wait=off' % self.qmp_path]
        self.args += list(args)
        self.proc = None
        self.qmp = None

    def start(self, timeout=60.0):
        self.launch()
        return self.connect(timeout)

    def launch(self):
        """Start the process; connect() to its QMP socket later."""
        self.log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env)

    def connect(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError('%s exited with %d: %s' % (
                    self.name, self.proc.returncode, self.output()))
            if os.path.exists(self.qmp_path):
                try:
                    self.qmp = QMP(self.qmp_path)
                    return self
                except (ConnectionRefusedError, FileNotFoundError):
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError('%s: no QMP socket' % self.name)
            time.sleep(0.02)

    def output(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ''

    def cmd(self, *args, **kwargs):
        return self.qmp.cmd(*args, **kwargs)

    def hmp(self, line):
        return self.qmp.hmp(line)

    def wait_for(self, pred, what, timeout=120.0, interval=0.05):
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise TimeoutError('%s: timed out waiting for %s' %
                                   (self.name, what))
            time.sleep(interval)

    def migration_status(self):
        return self.cmd('query-migrate').get('status')

    def wait_migration_end(self, timeout=120.0):
        """Wait until migration completed, failed or was cancelled here;
        return that status."""
        end = ('completed', 'failed', 'cancelled')
        last = []

        def ended():
            last[:] = [self.migration_status()]
            return last[0] in end

        self.wait_for(ended, 'migration end', timeout=timeout)
        return last[0]

    def shutdown(self, timeout=30.0):
        if self.proc is None:
            return None
        if self.proc.poll() is None and self.qmp is not None:
            try:
                self.qmp.cmd('quit')
            except (OSError, EOFError, QMPError):
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.qmp:
            self.qmp.close()
        self.log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def cleanup(self):
        self.shutdown()
        if self.own_tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def netns_unavailable():
    """Why a test cannot run as root in a network namespace of its own
    with a tap device, or None"""
    if os.geteuid() != 0:
        return 'needs root'
    if not os.path.exists('/dev/net/tun'):
        return 'no /dev/net/tun'
    if subprocess.call(['unshare', '-n', 'true'],
                       stderr=subprocess.DEVNULL) != 0:
        return 'cannot create a network namespace (unshare -n)'
    return None


def tap_attached_queues(ifname):
    """How many queues of the tap device @ifname are attached
    (TUNSETQUEUE), as the sysfs of this network namespace shows them in a
    mount namespace of its own (fdinfo shows detached queues too)"""
    out = subprocess.check_output(
        "unshare -m sh -c 'mount -t sysfs none /sys && "
        "ls /sys/class/net/%s/queues'" % ifname, shell=True, text=True)
    return sum(1 for q in out.split() if q.startswith('rx-'))


def exec_in_netns(argv):
    """Run @argv (a Python script and its arguments) again, in a new
    network namespace: does not return"""
    os.execvp('unshare', ['unshare', '-n', '--', sys.executable] + argv)


def run_qemu(binary, args, timeout=60.0):
    """Run QEMU to completion (for startup errors); return (status, output)."""
    p = subprocess.run([binary] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, text=True)
    return p.returncode, p.stdout


class TAP:
    """Minimal TAP producer: tap.ok(cond, name), tap.done()."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, diag=None):
        self.n += 1
        print('%s %d - %s' % ('ok' if cond else 'not ok', self.n, name),
              flush=True)
        if not cond:
            self.failed += 1
            if diag:
                for line in str(diag).splitlines():
                    print('# ' + line, flush=True)
        return cond

    def skip(self, name, why):
        self.n += 1
        print('ok %d - %s # SKIP %s' % (self.n, name, why), flush=True)

    def done(self):
        print('1..%d' % self.n, flush=True)
        return 1 if self.failed else 0


@contextlib.contextmanager
def checking(tap, what, *vms):
    """Run the checks of a with-block on @vms: an exception is a failed
    check, with the VMs' output; the VMs are cleaned up after, in order."""
    try:
        yield
    except (QMPError, RuntimeError, TimeoutError) as e:
        tap.ok(False, '%s: unexpected exception: %r' % (what, e),
               ''.join(v.output() for v in vms))
    finally:
        for v in vms:
            v.cleanup()
