#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""migrate-set-parameters hammered during a multifd migration with TLS.

A guest whose RAM holds random bytes (a private mapping of a random
file) migrates with multifd and TLS (PSK) over a UNIX socket, slowed by
max-bandwidth.  While it runs, a second QMP client on each side sends
migrate-set-parameters in a loop: in turn a parameter a running
migration cannot take (tls-creds, tls-hostname, tls-authz,
multifd-channels, block-bitmap-mapping, cpr-exec-command) and runtime
ones (max-bandwidth, downtime-limit).  Then the limit is lifted and the
migration must complete on both sides, with QEMU alive and no
sanitizer report in its output.

The report says how many requests each side got while the migration
ran, how many of the non-runtime changes it accepted (the series
refuses them all; stock 10.2.2 accepts them and frees the old values
under the migration threads), and the outcome.

usage: param_stress.py [--requests N] [--label L] [--logdir D] BINARY
Prints TAP.
"""

import argparse
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_vm import QMP, VM, TAP, QMPError  # noqa: E402

RAM_MB = 256
PSK = 'qemu:' + '0123456789abcdef' * 4

NON_RUNTIME = [
    {'tls-creds': 'nonexistent'},
    {'tls-hostname': 'host.example'},
    {'tls-authz': 'authz0'},
    {'multifd-channels': 7},
    {'block-bitmap-mapping': [{'node-name': 'n0', 'alias': 'a0',
                               'bitmaps': [{'name': 'b0',
                                            'alias': 'b0'}]}]},
    {'cpr-exec-command': ['qemu', '-incoming', 'defer']},
    {'tls-creds': None},
    {'block-bitmap-mapping': []},
]


def hammer(path, want, running, result):
    """Send requests on a new QMP connection to @path until @want were
    sent while @running() holds."""
    q = QMP(path)
    sent = accepted_bad = 0
    i = 0
    try:
        while sent < want and running():
            if i % 2:
                args = NON_RUNTIME[(i // 2) % len(NON_RUNTIME)]
                resp = q.cmd_raw('migrate-set-parameters', args)
                accepted_bad += 'return' in resp
            else:
                args = {'max-bandwidth': (8 + i % 8) << 20,
                        'downtime-limit': 100 + i % 50}
                resp = q.cmd_raw('migrate-set-parameters', args)
                if 'error' in resp:
                    result['errors'].append(resp['error'])
            sent += 1
            i += 1
    except (OSError, EOFError) as e:
        result['errors'].append(repr(e))
    finally:
        q.close()
    result['sent'] = sent
    result['accepted_bad'] = accepted_bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--requests', type=int, default=1000)
    ap.add_argument('--label', default='qemu')
    ap.add_argument('--logdir', help='keep the QEMU logs here')
    ap.add_argument('binary')
    args = ap.parse_args()
    tap = TAP()

    src = VM(args.binary, name='src')
    tmp = src.tmpdir
    ram = os.path.join(tmp, 'ram.bin')
    with open(ram, 'wb') as f:
        for _ in range(RAM_MB):
            f.write(os.urandom(1 << 20))
    keys = os.path.join(tmp, 'psk')
    os.mkdir(keys)
    with open(os.path.join(keys, 'keys.psk'), 'w') as f:
        f.write(PSK + '\n')
    sock = os.path.join(tmp, 'migrate.sock')
    dst = VM(args.binary, name='dst', tmpdir=tmp,
             args=['-incoming', 'defer'])
    vms = (src, dst)
    for vm, mem in ((src, 'mem-path=%s,share=off' % ram),
                    (dst, 'mem-path=%s,share=off' % ram)):
        vm.args = [a for a in vm.args if a != '64M']
        vm.args[vm.args.index('-m') + 1:vm.args.index('-m') + 1] = \
            ['%dM' % RAM_MB]
        vm.args += ['-object', 'memory-backend-file,id=ram0,size=%dM,%s' %
                    (RAM_MB, mem), '-machine', 'memory-backend=ram0',
                    '-qmp', 'unix:%s,server=on,wait=off' %
                    os.path.join(tmp, vm.name + '-2.qmp')]
    try:
        for vm in vms:
            vm.start()
        src.cmd('object-add', {'qom-type': 'tls-creds-psk', 'id': 'tls0',
                               'endpoint': 'client', 'dir': keys,
                               'username': 'qemu'})
        dst.cmd('object-add', {'qom-type': 'tls-creds-psk', 'id': 'tls0',
                               'endpoint': 'server', 'dir': keys})
        for vm in vms:
            vm.cmd('migrate-set-capabilities',
                   {'capabilities': [{'capability': 'multifd',
                                      'state': True}]})
            vm.cmd('migrate-set-parameters',
                   {'multifd-channels': 2, 'tls-creds': 'tls0'})
        src.cmd('migrate-set-parameters', {'max-bandwidth': 8 << 20})
        dst.cmd('migrate-incoming', uri='unix:' + sock)
        src.cmd('migrate', uri='unix:' + sock)
        src.wait_for(lambda: src.migration_status() == 'active',
                     'source active')

        results = [{'errors': []}, {'errors': []}]
        flags = {'src': True, 'dst': True}
        threads = []
        for vm, res in zip(vms, results):
            path = os.path.join(tmp, vm.name + '-2.qmp')
            t = threading.Thread(target=hammer, args=(
                path, args.requests, lambda n=vm.name: flags[n], res))
            threads.append(t)
            t.start()
        for t in threads:
            t.join(600)
        flags['src'] = flags['dst'] = False
        st = src.migration_status()
        tap.ok(st == 'active', '%s: migration still running after the '
               'requests' % args.label, st)
        for vm, res in zip(vms, results):
            tap.ok(res.get('sent', 0) >= args.requests and
                   not res['errors'],
                   '%s %s: %d requests while migrating, %d non-runtime '
                   'changes accepted' % (args.label, vm.name,
                                         res.get('sent', 0),
                                         res.get('accepted_bad', 0)),
                   res['errors'][:5])
        try:
            src.cmd('migrate-set-parameters', {'max-bandwidth': 1 << 40})
        except QMPError as e:
            tap.ok(False, 'lift the bandwidth limit', e)
        st = src.wait_migration_end(timeout=300)
        tap.ok(st == 'completed', '%s: source migration %s' %
               (args.label, st), src.cmd('query-migrate'))
        st = dst.wait_migration_end()
        tap.ok(st == 'completed', '%s: destination migration %s' %
               (args.label, st))
        for vm in vms:
            rc = vm.shutdown()
            out = vm.output()
            if args.logdir:
                os.makedirs(args.logdir, exist_ok=True)
                with open(os.path.join(args.logdir, '%s-%s.log' %
                                       (args.label, vm.name)), 'w') as f:
                    f.write(out)
            tap.ok(rc == 0 and 'Sanitizer' not in out,
                   '%s %s: exit status %s, no sanitizer report' %
                   (args.label, vm.name, rc), out[-3000:])
    except Exception as e:
        died = ['%s exited with %d' % (vm.name, vm.proc.poll())
                for vm in vms if vm.proc and vm.proc.poll() is not None]
        tap.ok(False, '%s: unexpected exception: %r%s' %
               (args.label, e, ' (%s)' % ', '.join(died) if died else ''),
               src.output()[-3000:] + dst.output()[-3000:])
    finally:
        for vm in vms:
            vm.cleanup()
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())
