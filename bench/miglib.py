# SPDX-License-Identifier: GPL-2.0-or-later
"""One precopy migration between two local QEMUs, for the benchmarks.

Both sides run the same binary, `-M q35 -nodefaults -S` with no guest
code at all, and migrate over a UNIX socket with max-bandwidth set to
100 GiB/s on the source.  Two RAM variants:

  zero    memory-backend-ram on both sides: the RAM is never touched,
          so every page goes as a zero page
  random  the source's RAM is a private mapping of a file of random
          bytes (memory-backend-file, share=off), so every page goes
          in full; the destination has memory-backend-ram of the same
          id and size

With a hammer, a thread sends query-status to the destination in a
tight loop from just before `migrate` until the destination leaves the
inmigrate state, and records when each command was sent (relative to
`migrate`) and its round-trip time.
"""

import os
import sys
import threading
import time

from benchlib import Qemu, die, encode, ram_size_arg, stop_all

VARIANTS = ('zero', 'random')
MAX_BANDWIDTH = 100 << 30
QUERY_STATUS = encode('query-status')


def make_random_file(path, nbytes, chunk=1 << 20):
    """A file of nbytes random bytes (os.urandom, 1 MiB at a time)."""
    with open(path, 'wb') as f:
        left = nbytes
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


class Hammer(threading.Thread):
    """query-status in a tight loop on a monitor, until not inmigrate."""

    def __init__(self, mon):
        super().__init__(daemon=True)
        self.mon = mon
        self.samples = []           # (perf_counter at send, rtt seconds)
        self.end = None             # perf_counter of the first reply
        self.error = None           # that was not inmigrate
        self.stop = False

    def run(self):
        mon, samples = self.mon, self.samples
        clock = time.perf_counter
        try:
            while not self.stop:
                t = clock()
                line = mon.raw(QUERY_STATUS)
                now = clock()
                samples.append((t, now - t))
                if b'"return"' not in line:
                    raise RuntimeError('query-status: %r' % line)
                if b'"inmigrate"' not in line:
                    self.end = now
                    return
        except Exception as e:       # reported by the caller
            self.error = e


def migrate_once(binary, variant, ram_gib, acc, tmpdir, random_file=None,
                 hammer=False, lead_in=0.2, timeout=900.0):
    """Run one migration; return a dict of figures (times in seconds).

    The QEMU processes are gone when this returns or raises.
    """
    size, nbytes = ram_size_arg(ram_gib)
    mig = os.path.join(tmpdir, 'mig.sock')
    if os.path.exists(mig):
        os.unlink(mig)
    machine = ['-M', 'q35,memory-backend=mem0', '-m', size, '-S']
    ram = 'memory-backend-ram,id=mem0,size=%s' % size
    if variant == 'zero':
        src_mem = ram
    elif variant == 'random':
        src_mem = ('memory-backend-file,id=mem0,size=%s,mem-path=%s,'
                   'share=off' % (size, random_file))
    else:
        raise ValueError(variant)
    dst = Qemu(binary, machine + ['-object', ram, '-incoming', 'unix:' + mig],
               tmpdir, 'dst', acc)
    src = Qemu(binary, machine + ['-object', src_mem], tmpdir, 'src', acc)
    ham = None
    try:
        dst.start()
        src.start()
        src.cmd('migrate-set-parameters', {'max-bandwidth': MAX_BANDWIDTH})
        if hammer:
            ham = Hammer(dst.mon)
            ham.start()
            time.sleep(lead_in)
        t0 = time.perf_counter()
        src.cmd('migrate', {'uri': 'unix:' + mig})
        deadline = time.monotonic() + timeout
        while True:
            info = src.cmd('query-migrate')
            if info.get('status') in ('completed', 'failed', 'cancelled'):
                break
            if time.monotonic() > deadline:
                raise TimeoutError('migration did not end in %d s'
                                   % timeout)
            time.sleep(0.05)
        if info['status'] != 'completed':
            raise RuntimeError('migration %s: %s' % (
                info['status'], info.get('error-desc', '')))
        if ham is not None:
            ham.join(timeout)
            if ham.is_alive():
                ham.stop = True
                raise TimeoutError('destination still inmigrate')
            if ham.error is not None:
                raise RuntimeError('destination monitor: %s' % ham.error)
        while True:
            dinfo = dst.cmd('query-migrate')
            if dinfo.get('status') in ('completed', 'failed'):
                break
            if time.monotonic() > deadline:
                raise TimeoutError('destination did not finish loading')
            time.sleep(0.02)
        if dinfo['status'] != 'completed':
            raise RuntimeError('destination: migration %s'
                               % dinfo['status'])
        ram_info = info.get('ram', {})
        res = {
            'binary': binary,
            'variant': variant,
            'total': info['total-time'] / 1000.0,
            'downtime': info.get('downtime', 0) / 1000.0,
            'setup': info.get('setup-time', 0) / 1000.0,
            'transferred': ram_info.get('transferred', 0),
            'ram_total': ram_info.get('total', nbytes),
            'normal': ram_info.get('normal', 0),
            'duplicate': ram_info.get('duplicate', 0),
        }
        if ham is not None:
            res['samples'] = [(t - t0, rtt) for t, rtt in ham.samples]
            res['load_end'] = ham.end - t0
        return res
    finally:
        if ham is not None:
            ham.stop = True
        stop_all([src, dst])
        if ham is not None:
            ham.join(5)
        if os.path.exists(mig):
            os.unlink(mig)


def loopback(nbytes, tmpdir, bufsize=1 << 20):
    """Seconds to push nbytes through a UNIX socket, Python to Python.

    A writer process sends bufsize buffers, this process reads them
    with recv_into; the time runs from accept to the last byte.
    """
    import socket
    import subprocess
    import sys
    path = os.path.join(tmpdir, 'loop.sock')
    if os.path.exists(path):
        os.unlink(path)
    writer = (
        'import os, socket, sys\n'
        'n, bs = int(sys.argv[2]), int(sys.argv[3])\n'
        'buf = memoryview(os.urandom(bs))\n'
        's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n'
        's.connect(sys.argv[1])\n'
        'while n:\n'
        '    k = min(n, bs)\n'
        '    s.sendall(buf[:k])\n'
        '    n -= k\n'
        's.close()\n')
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = None
    try:
        srv.bind(path)
        srv.listen(1)
        srv.settimeout(60)
        proc = subprocess.Popen([sys.executable, '-c', writer, path,
                                 str(nbytes), str(bufsize)],
                                start_new_session=True)
        conn, _ = srv.accept()
        conn.settimeout(120)
        buf = memoryview(bytearray(bufsize))
        got = 0
        t = time.perf_counter()
        while got < nbytes:
            k = conn.recv_into(buf)
            if not k:
                break
            got += k
        elapsed = time.perf_counter() - t
        conn.close()
        if got != nbytes:
            raise RuntimeError('loopback: got %d of %d bytes'
                               % (got, nbytes))
        if proc.wait(60) != 0:
            raise RuntimeError('loopback writer failed')
        return elapsed
    finally:
        srv.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if os.path.exists(path):
            os.unlink(path)


def parse_variants(text):
    """The RAM variants named in a comma-separated list."""
    variants = [v for v in text.split(',') if v]
    for v in variants:
        if v not in VARIANTS:
            die('unknown variant %r' % v)
    return variants


def prepare(binaries, variants, ram_gib, acc, tmpdir, hammer=False):
    """Write the random RAM file if a variant needs it (return its path,
    or None), then migrate once with each binary, unmeasured, to warm
    the caches."""
    ram_file = None
    if 'random' in variants:
        ram_file = os.path.join(tmpdir, 'ram.bin')
        print('writing %g GiB of random bytes...' % ram_gib,
              file=sys.stderr, flush=True)
        make_random_file(ram_file, ram_size_arg(ram_gib)[1])
    for _, binary in binaries:
        migrate_once(binary, 'zero', min(ram_gib, 0.25), acc, tmpdir,
                     hammer=hammer)
    return ram_file


def add_args(ap, reps):
    """The options every migration benchmark takes."""
    ap.add_argument('--series', required=True)
    ap.add_argument('--stock', required=True)
    ap.add_argument('--ram-gib', type=float, default=2.0)
    ap.add_argument('--reps', type=int, default=reps)
    ap.add_argument('--variants', default='zero,random')
    ap.add_argument('--out', help='markdown report')
    ap.add_argument('--tmpdir', help='where the RAM file goes')
