#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""query-migrate while QEMU quits.

Each run starts QEMU, floods one QMP monitor with `query-migrate`, and
makes QEMU quit: by `quit` on a second monitor, or by SIGTERM, in turn.
It checks that QEMU exited with status 0 and printed no assertion.  The
monitor finishes the request it had taken while QEMU cleans up, after
migration_shutdown(): stock 10.2.2 then reads a freed migration
object.  Freed memory is filled (MALLOC_PERTURB_) so that such
a read shows.

usage: shutdown_query.py [--runs N] [--label L] BINARY
Prints TAP, and a summary line "L: N runs, N crashed".
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_vm import QMP, VM, TAP  # noqa: E402

COMMAND = os.environ.get('SHUTDOWN_QUERY_COMMAND', 'query-migrate')


def one_run(binary, how):
    """One QEMU: flood its first QMP monitor with query-migrate, and make
    it quit (@how: 'quit' on a second monitor, or 'sigterm')."""
    vm = VM(binary, machine='q35', args=['-m', '32M'])
    second = os.path.join(vm.tmpdir, 'second.qmp')
    vm.args += ['-qmp', 'unix:%s,server=on,wait=off' % second]
    vm.start()
    q = vm.qmp
    other = QMP(second)
    replies = [0]
    stop = threading.Event()
    query = json.dumps({'execute': COMMAND}).encode() + b'\n'

    def writer():
        try:
            while not stop.is_set():
                q.sock.sendall(query * 16)
        except OSError:
            pass

    def reader():
        try:
            while q.file.readline():
                replies[0] += 1
        except (OSError, ValueError):
            pass

    threads = [threading.Thread(target=writer, daemon=True),
               threading.Thread(target=reader, daemon=True)]
    for t in threads:
        t.start()
    # Let the dispatcher get busy, then quit
    while replies[0] < 200 and vm.proc.poll() is None:
        time.sleep(0.002)
    if how == 'quit':
        try:
            other.send('quit')
        except OSError:
            pass
    else:
        vm.proc.send_signal(signal.SIGTERM)
    hung = ''
    try:
        rc = vm.proc.wait(30)
    except subprocess.TimeoutExpired:
        hung = 'QEMU hangs while quitting\n'
        if shutil.which('gdb'):
            hung += subprocess.run(
                ['gdb', '-p', str(vm.proc.pid), '-batch',
                 '-ex', 'thread apply all bt',
                 '-ex', 'print qmp_dispatcher_co',
                 '-ex', 'print qmp_dispatcher_co_busy',
                 '-ex', 'print *(Coroutine *)qmp_dispatcher_co',
                 '-ex', 'print *iohandler_ctx'],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True).stdout
        vm.proc.kill()
        rc = vm.proc.wait()
    stop.set()
    for c in (q, other):
        c.close()
    for t in threads:
        t.join(5)
    vm.qmp = None
    vm.proc = None
    vm.log.close()
    out = hung + vm.output()
    vm.cleanup()
    return rc, replies[0], out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--runs', type=int, default=200)
    ap.add_argument('--label', default='qemu')
    ap.add_argument('binary')
    args = ap.parse_args()

    # Freed memory is filled with 0xcc (glibc fills with the byte XOR 0xff)
    os.environ['MALLOC_PERTURB_'] = str(0xcc ^ 0xff)
    tap = TAP()
    crashed = 0
    for i in range(args.runs):
        how = ('quit', 'sigterm')[i % 2]
        rc, replies, out = one_run(args.binary, how)
        bad = rc != 0 or 'Assertion' in out or 'ERROR' in out
        crashed += bad
        if bad or i >= args.runs - 2:
            tap.ok(not bad, '%s run %d (%s): exit status %d, %d replies' %
                   (args.label, i + 1, how, rc, replies), out)
    tap.ok(crashed == 0, '%s: %d runs, %d crashed' %
           (args.label, args.runs, crashed))
    print('# %s: %d runs, %d crashed' % (args.label, args.runs, crashed))
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())
