#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Destination gating, over real QMP sockets and HMP.

While an incoming migration only listens (-incoming <uri>, or
migrate-incoming after -incoming defer), the destination takes option
changes as stock does, over QMP and HMP; it refuses only what the
listener already depends on (multifd, with stock's error) and what its
transport cannot carry (mapped-ram on a socket, naming the capability
and the address).  libvirt's flow (-incoming defer, options,
migrate-incoming) works, here with multifd, and the options can change
again once the migration has completed.  The refusals once a source has
connected are checked by client_flows.py and the qtests.

usage: gating.py --qemu BINARY
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_vm import VM, TAP, QMPError  # noqa: E402

def refused(vm, cmd, args):
    try:
        vm.cmd(cmd, args)
    except QMPError as e:
        return e.desc
    return None


def check_listening(tap, vm, how, addr, caps=('xbzrle', 'postcopy-ram',
                                              'events')):
    for cap in caps:
        got = refused(vm, 'migrate-set-capabilities',
                      {'capabilities': [{'capability': cap,
                                         'state': True}]})
        tap.ok(got is None, '%s: capability %s accepted' % (how, cap), got)
        vm.cmd('migrate-set-capabilities',
               {'capabilities': [{'capability': cap, 'state': False}]})
    got = refused(vm, 'migrate-set-parameters',
                  {'max-bandwidth': 1000, 'tls-creds': 'creds0'})
    params = vm.cmd('query-migrate-parameters')
    tap.ok(got is None and params['tls-creds'] == 'creds0' and
           params['max-bandwidth'] == 1000,
           '%s: tls-creds and max-bandwidth accepted' % how, got)
    vm.cmd('migrate-set-parameters', {'tls-creds': None})

    text = vm.hmp('migrate_set_capability postcopy-ram on')
    tap.ok(text.strip() == '', '%s: HMP capability change accepted' % how,
           text)
    vm.hmp('migrate_set_capability postcopy-ram off')
    text = vm.hmp('migrate_set_parameter multifd-channels 9')
    params = vm.cmd('query-migrate-parameters')
    tap.ok(text.strip() == '' and params['multifd-channels'] == 9,
           '%s: HMP parameter change accepted' % how, text)

    want = "Capability 'mapped-ram' cannot be set while the incoming " \
           "migration listens on %s: Migration requires seekable " \
           "transport (e.g. file)" % addr
    got = refused(vm, 'migrate-set-capabilities',
                  {'capabilities': [{'capability': 'mapped-ram',
                                     'state': True}]})
    tap.ok(got == want, '%s: mapped-ram refused, naming the transport' % how,
           got)
    text = vm.hmp('migrate_set_capability mapped-ram on')
    tap.ok(want in text, '%s: HMP mapped-ram refused the same' % how, text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--qemu', required=True)
    args = ap.parse_args()
    tap = TAP()

    # -incoming with a URI: listening, options taken as on stock
    dst = VM(args.qemu, name='dst-uri', machine='none')
    sock = os.path.join(dst.tmpdir, 'unused.sock')
    dst.args += ['-incoming', 'unix:' + sock]
    try:
        dst.start()
        check_listening(tap, dst, '-incoming unix', 'unix:' + sock)
        got = refused(dst, 'migrate-set-capabilities',
                      {'capabilities': [{'capability': 'multifd',
                                         'state': True}]})
        tap.ok(got == 'Multifd must be set before incoming starts',
               '-incoming unix: multifd refused as on stock', got)
    except Exception as e:
        tap.ok(False, 'unexpected exception: %r' % e, dst.output())
    finally:
        dst.cleanup()

    # libvirt's flow, with multifd, then a real migration
    src = VM(args.qemu, name='src')
    dst = VM(args.qemu, name='dst', tmpdir=src.tmpdir,
             args=['-incoming', 'defer'])
    sock = os.path.join(src.tmpdir, 'migrate.sock')
    multifd = {'capabilities': [{'capability': 'multifd', 'state': True}]}
    try:
        src.start()
        dst.start()
        for vm in (src, dst):
            vm.cmd('migrate-set-capabilities', multifd)
            vm.cmd('migrate-set-parameters', {'multifd-channels': 3})
        tap.ok(True, '-incoming defer: options set before migrate-incoming')
        dst.cmd('migrate-incoming', uri='unix:' + sock)
        # multifd is on: xbzrle conflicts with it
        check_listening(tap, dst, 'after migrate-incoming', 'unix:' + sock,
                        ('postcopy-ram', 'events'))
        dst.cmd('migrate-set-parameters', {'multifd-channels': 3})

        src.cmd('migrate', uri='unix:' + sock)
        st = dst.wait_migration_end()
        tap.ok(st == 'completed', 'multifd migration completed', st)

        dst.cmd('migrate-set-capabilities',
                {'capabilities': [{'capability': 'auto-converge',
                                   'state': True}]})
        dst.cmd('migrate-set-parameters', {'tls-creds': 'creds0'})
        tap.ok(True, 'options can change again after the migration')
        tap.ok(src.shutdown() == 0, 'source quits cleanly', src.output())
        tap.ok(dst.shutdown() == 0, 'destination quits cleanly',
               dst.output())
    except Exception as e:
        tap.ok(False, 'unexpected exception: %r' % e,
               src.output() + dst.output())
    finally:
        dst.cleanup()
        src.cleanup()
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())
