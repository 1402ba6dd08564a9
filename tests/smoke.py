#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Smoke test of the built QEMU over real QMP sockets.

Starts the binary twice, reads the migration parameters over QMP and HMP
(human-monitor-command), migrates a small TCG guest over a UNIX socket and
checks that both sides reach the expected states and that guest RAM
arrived: the source carries a random pattern, put into its RAM by a
loader device the destination does not have.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_vm import TAP, VM  # noqa: E402

PATTERN_ADDR = 0x2000000      # 32 MiB, untouched by SeaBIOS in a 64M guest
PATTERN_SIZE = 64 * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--qemu', required=True)
    args = ap.parse_args()
    tap = TAP()

    src = VM(args.qemu, name='src')
    pattern = os.urandom(PATTERN_SIZE)
    pattern_file = os.path.join(src.tmpdir, 'pattern.bin')
    with open(pattern_file, 'wb') as f:
        f.write(pattern)
    src.args += ['-device', 'loader,addr=%#x,file=%s' % (PATTERN_ADDR,
                                                        pattern_file)]
    sock = os.path.join(src.tmpdir, 'migrate.sock')
    dst = VM(args.qemu, name='dst', tmpdir=src.tmpdir,
             args=['-incoming', 'unix:' + sock])
    try:
        src.start()
        dst.start()

        params = src.cmd('query-migrate-parameters')
        tap.ok(params.get('downtime-limit') == 300 and
               params.get('multifd-channels') == 2 and
               params.get('max-bandwidth') == 128 * 1024 * 1024,
               'query-migrate-parameters returns the defaults', params)

        text = src.hmp('info migrate_parameters')
        tap.ok('multifd-channels: 2' in text and 'downtime-limit: 300' in text,
               'HMP info migrate_parameters prints the parameters', text)

        src.cmd('migrate-set-parameters', downtime_limit=500,
                max_bandwidth=1 << 30)
        params = src.cmd('query-migrate-parameters')
        tap.ok(params.get('downtime-limit') == 500 and
               params.get('max-bandwidth') == 1 << 30,
               'migrate-set-parameters takes effect', params)

        text = src.hmp('migrate_set_parameter downtime-limit 400')
        params = src.cmd('query-migrate-parameters')
        tap.ok(text == '' and params.get('downtime-limit') == 400,
               'HMP migrate_set_parameter takes effect', text)

        tap.ok(dst.cmd('query-status')['status'] == 'inmigrate',
               'destination waits in inmigrate')

        src.cmd('migrate', uri='unix:' + sock)
        st = src.wait_migration_end()
        tap.ok(st == 'completed', 'source migration completed', st)
        st = dst.wait_migration_end()
        tap.ok(st == 'completed', 'destination migration completed', st)
        tap.ok(src.cmd('query-status')['status'] == 'postmigrate',
               'source is in postmigrate')
        status = dst.wait_for(
            lambda: dst.cmd('query-status')['status'] == 'running' and
            'running', 'destination running', timeout=30)
        tap.ok(status == 'running', 'destination runs the guest')

        out = os.path.join(dst.tmpdir, 'dst-ram.bin')
        dst.cmd('pmemsave', val=PATTERN_ADDR, size=PATTERN_SIZE,
                filename=out)
        with open(out, 'rb') as f:
            got = f.read()
        tap.ok(got == pattern, 'guest RAM arrived on the destination')

        tap.ok(src.shutdown() == 0, 'source quits cleanly', src.output())
        tap.ok(dst.shutdown() == 0, 'destination quits cleanly',
               dst.output())
    except Exception as e:  # report, do not hide, unexpected failures
        tap.ok(False, 'unexpected exception: %r' % e,
               src.output() + dst.output())
    finally:
        dst.cleanup()
        src.cleanup()
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())
