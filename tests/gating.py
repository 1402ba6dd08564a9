#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Destination gating, over real QMP sockets and HMP.

Once an incoming migration is started (-incoming <uri>, or
migrate-incoming after -incoming defer), the destination refuses
capability changes and changes of the parameters a running migration
cannot take, with errors that name them; runtime parameters and
current values are accepted.  libvirt's flow (-incoming defer, options,
migrate-incoming) works, here with multifd, and the options can change
again once the migration has completed.

usage: gating.py --qemu BINARY
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_vm import VM, TAP, QMPError  # noqa: E402

IN_PROGRESS = 'cannot be changed while an incoming migration is in progress'


def refused(vm, cmd, args):
    try:
        vm.cmd(cmd, args)
    except QMPError as e:
        return e.desc
    return None


def check_gated(tap, vm, how):
    want = "Capability 'xbzrle' " + IN_PROGRESS
    got = refused(vm, 'migrate-set-capabilities',
                  {'capabilities': [{'capability': 'xbzrle',
                                     'state': True}]})
    tap.ok(got == want, '%s: capability change refused' % how, got)

    want = "Parameter 'tls-creds' " + IN_PROGRESS
    got = refused(vm, 'migrate-set-parameters',
                  {'max-bandwidth': 1000, 'tls-creds': 'creds0'})
    tap.ok(got == want, '%s: tls-creds refused' % how, got)
    params = vm.cmd('query-migrate-parameters')
    tap.ok(params['max-bandwidth'] == 128 << 20 and params['tls-creds'] == '',
           '%s: a refused request changes nothing' % how, params)

    text = vm.hmp('migrate_set_capability postcopy-ram on')
    tap.ok("Capability 'postcopy-ram' " + IN_PROGRESS in text,
           '%s: HMP capability change refused, naming it' % how, text)
    text = vm.hmp('migrate_set_parameter multifd-channels 9')
    tap.ok("Parameter 'multifd-channels' " + IN_PROGRESS in text,
           '%s: HMP parameter change refused, naming it' % how, text)

    vm.cmd('migrate-set-parameters', {'max-bandwidth': 4096,
                                      'downtime-limit': 123})
    params = vm.cmd('query-migrate-parameters')
    tap.ok(params['max-bandwidth'] == 4096 and
           params['downtime-limit'] == 123,
           '%s: runtime parameters accepted' % how, params)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--qemu', required=True)
    args = ap.parse_args()
    tap = TAP()

    # -incoming with a URI: gated from the start
    dst = VM(args.qemu, name='dst-uri', machine='none')
    sock = os.path.join(dst.tmpdir, 'unused.sock')
    dst.args += ['-incoming', 'unix:' + sock]
    try:
        dst.start()
        check_gated(tap, dst, '-incoming unix')
        caps = {c['capability']: c['state']
                for c in dst.cmd('query-migrate-capabilities')}
        dst.cmd('migrate-set-capabilities',
                {'capabilities': [{'capability': 'xbzrle',
                                   'state': caps['xbzrle']}]})
        tap.ok(True, '-incoming unix: the current capability state is '
               'accepted')
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
        check_gated(tap, dst, 'after migrate-incoming')

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
