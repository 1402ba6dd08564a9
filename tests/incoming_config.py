#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""-incoming config: and HMP migrate_set_parameter, over real QMP sockets.

A destination started with -incoming config: (keyval and JSON) shows
the values in query-migrate-parameters and in HMP's info
migrate_parameters, over -global and under later QMP; a multifd
migration whose destination takes its channel count from config:
completes; HMP sets block-bitmap-mapping (JSON) and resets a TLS option
with null; a cpr-transfer destination shows its mode, which config:
may repeat and nothing may change until the incoming migration ends,
then keeps it if config: gave it, else goes back to normal;
malformed options make QEMU exit with status 1 and an error that
starts with the option and names the key.  With --stock, reports
what stock 10.2.2 does with the same options (it has no config:).

usage: incoming_config.py --qemu BINARY [--stock BINARY]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_vm import VM, TAP, QMPError, checking, run_qemu  # noqa: E402

BAD = [
    ('config:nonsense=1', "Parameter 'nonsense' is unexpected"),
    ('config:multifd-channels=four', "'multifd-channels' expects"),
    ('config:multifd-channels=0', "'multifd-channels' expects"),
    ('config:max-cpu-throttle=5', "'max-cpu-throttle' expects"),
    ('config:cpr-exec-command.1=x', "'cpr-exec-command.0' missing"),
    ('config:{"tls-creds": 4}', "'tls-creds', expected"),
    ('config:', 'no parameter given'),
    ('config:mode=cpr-transfer', 'mode=cpr-transfer needs the cpr channel'),
    ('config:mode=cpr-exec', 'mode=cpr-exec needs the CPR state'),
]


def check_bad(tap, qemu):
    for opt, want in BAD:
        rc, out = run_qemu(qemu, ['-M', 'none', '-display', 'none',
                                  '-nodefaults', '-incoming', opt])
        first = out.splitlines()[0] if out else ''
        tap.ok(rc == 1 and ': -incoming config:' in first and want in first,
               'bad %s: exit 1, names it' % opt, '%d: %s' % (rc, out))
    rc, out = run_qemu(qemu, ['-M', 'none', '-display', 'none',
                              '-incoming', 'config:multifd-channels=2',
                              '-incoming', 'config:max-bandwidth=1'])
    tap.ok(rc == 1 and 'only one -incoming config: may be given' in out,
           'a second config: is refused', '%d: %s' % (rc, out))
    rc, out = run_qemu(qemu, ['-M', 'none', '-display', 'none',
                              '-incoming', 'config:mode=cpr-reboot',
                              '-incoming', 'cpr,addr.transport=socket,'
                              'addr.type=unix,addr.path=/nonexistent/s'])
    tap.ok(rc == 1 and out.startswith('qemu-system-x86_64: -incoming '
                                      'config: mode=cpr-reboot, but the '
                                      'incoming migration is cpr-transfer'),
           'config:mode other than the cpr channel\'s is refused',
           '%d: %s' % (rc, out))
    # Whose error it is, when -global is wrong too
    base = ['-M', 'none', '-display', 'none', '-nodefaults',
            '-global', 'migration.announce-rounds=5000',
            '-global', 'migration.x-cpu-throttle-initial=50']
    rc, out = run_qemu(qemu, base + ['-incoming', 'config:downtime-limit=9'])
    first = out.splitlines()[0] if out else ''
    tap.ok(rc == 1 and "'announce-rounds' expects" in first and
           'config:' not in first,
           "-global's error is not config:'s", '%d: %s' % (rc, out))
    rc, out = run_qemu(qemu, base + ['-incoming', 'config:max-cpu-throttle=30'])
    first = out.splitlines()[0] if out else ''
    tap.ok(rc == 1 and ': -incoming config:' in first and
           "'max-cpu-throttle' expects" in first,
           "config:'s error beside a wrong -global names config:",
           '%d: %s' % (rc, out))


def check_values(tap, qemu):
    vm = VM(qemu, name='keyval', machine='none',
            args=['-global', 'migration.x-max-bandwidth=1000',
                  '-global', 'migration.multifd-channels=3',
                  '-incoming', 'config:multifd-channels=5,'
                  'downtime-limit=444,cpr-exec-command.0=qemu,'
                  'cpr-exec-command.1=-S'])
    with checking(tap, 'keyval', vm):
        vm.start()
        p = vm.cmd('query-migrate-parameters')
        tap.ok(p['multifd-channels'] == 5 and p['downtime-limit'] == 444 and
               p['max-bandwidth'] == 1000 and
               p['cpr-exec-command'] == ['qemu', '-S'],
               'keyval config: over -global', p)
        status = vm.cmd('query-status')['status']
        tap.ok(status == 'inmigrate', 'config: alone waits like defer',
               status)
        info = vm.hmp('info migrate_parameters')
        tap.ok('multifd-channels: 5' in info and
               'cpr-exec-command: qemu -S' in info,
               'info migrate_parameters shows config: values', info)
        vm.cmd('migrate-set-parameters', {'multifd-channels': 6})
        p = vm.cmd('query-migrate-parameters')
        tap.ok(p['multifd-channels'] == 6, 'QMP over config:', p)

        out = vm.hmp('migrate_set_parameter block-bitmap-mapping '
                     '[{"node-name": "n", "alias": "a", "bitmaps": []}]')
        p = vm.cmd('query-migrate-parameters')
        tap.ok(out == '' and p.get('block-bitmap-mapping') ==
               [{'node-name': 'n', 'alias': 'a', 'bitmaps': []}],
               'HMP sets block-bitmap-mapping', out)
        vm.hmp('migrate_set_parameter tls-creds creds0')
        out = vm.hmp('migrate_set_parameter tls-creds null')
        p = vm.cmd('query-migrate-parameters')
        tap.ok(out == '' and p['tls-creds'] == '',
               'HMP resets tls-creds with null', out)
        out = vm.hmp('migrate_set_parameter multifd-channels 0')
        tap.ok("Parameter 'multifd-channels' expects" in out,
               'HMP error names the parameter', out)
        tap.ok(vm.shutdown() == 0, 'quits cleanly', vm.output())

    vm = VM(qemu, name='json', machine='none',
            args=['-incoming', 'defer', '-incoming',
                  'config:{"tls-creds": null, "cpr-exec-command": [],'
                  ' "max-bandwidth": 2048}'])
    with checking(tap, 'json', vm):
        vm.start()
        p = vm.cmd('query-migrate-parameters')
        tap.ok(p['tls-creds'] == '' and p['cpr-exec-command'] == [] and
               p['max-bandwidth'] == 2048, 'JSON config: after defer', p)

    # The migration object exists before the preconfig loop
    vm = VM(qemu, name='preconfig', machine='none',
            args=['-preconfig', '-incoming', 'config:multifd-channels=4'])
    with checking(tap, 'preconfig', vm):
        vm.start()
        vm.cmd('x-exit-preconfig')
        p = vm.cmd('query-migrate-parameters')
        status = vm.cmd('query-status')['status']
        tap.ok(p['multifd-channels'] == 4 and status == 'inmigrate',
               'config: with -preconfig', (p, status))


def check_migration(tap, qemu):
    src = VM(qemu, name='src')
    dst = VM(qemu, name='dst', tmpdir=src.tmpdir,
             args=['-incoming', 'config:multifd-channels=3',
                   '-incoming', 'defer'])
    sock = os.path.join(src.tmpdir, 'migrate.sock')
    multifd = {'capabilities': [{'capability': 'multifd', 'state': True}]}
    with checking(tap, 'migration', dst, src):
        src.start()
        dst.start()
        for vm in (src, dst):
            vm.cmd('migrate-set-capabilities', multifd)
        src.cmd('migrate-set-parameters', {'multifd-channels': 3})
        n = dst.cmd('query-migrate-parameters')['multifd-channels']
        tap.ok(n == 3, 'destination has multifd-channels from config:', n)
        dst.cmd('migrate-incoming', uri='unix:' + sock)
        src.cmd('migrate', uri='unix:' + sock)
        st = dst.wait_migration_end()
        tap.ok(st == 'completed',
               'multifd migration with channels from config:', st)


def check_cpr(tap, qemu, stock=False, config=True):
    """A cpr-transfer migration, whose destination repeats its mode with
    @config.  With @stock, which has no config:, only print what the
    destination shows.
    """
    after = 'cpr-transfer' if config else 'normal'
    config = ['-incoming', 'config:mode=cpr-transfer'] if config else []
    # CPR keeps the guest RAM: it must be shared
    ram = ['-object', 'memory-backend-memfd,id=ram0,size=64M',
           '-machine', 'memory-backend=ram0']
    src = VM(qemu, name='src', machine='none,aux-ram-share=on', args=ram)
    cpr = os.path.join(src.tmpdir, 'cpr.sock')
    sock = os.path.join(src.tmpdir, 'migrate.sock')
    main = {'channel-type': 'main',
            'addr': {'transport': 'socket', 'type': 'unix', 'path': sock}}
    dst = VM(qemu, name='dst', tmpdir=src.tmpdir,
             machine='none,aux-ram-share=on',
             args=ram + ['-incoming', 'defer',
                         '-incoming', 'cpr,addr.transport=socket,'
                         'addr.type=unix,addr.path=' + cpr] + config)
    with checking(tap, 'cpr', dst, src):
        # It opens its monitor once it has read the cpr channel
        dst.launch()
        src.start()
        src.wait_for(lambda: os.path.exists(cpr), 'the cpr socket')
        src.cmd('migrate-set-parameters', mode='cpr-transfer')
        src.cmd('migrate', channels=[
            main, {'channel-type': 'cpr',
                   'addr': {'transport': 'socket', 'type': 'unix',
                            'path': cpr}}])
        dst.connect()
        mode = dst.cmd('query-migrate-parameters')['mode']
        if stock:
            dst.cmd('migrate-set-parameters', mode='cpr-reboot')
            print('# stock 10.2.2, cpr-transfer destination: shows mode '
                  '%s; mode=cpr-reboot accepted, shows %s' % (
                      mode, dst.cmd('query-migrate-parameters')['mode']))
            return
        tap.ok(mode == 'cpr-transfer', 'cpr destination shows its mode',
               mode)
        try:
            dst.cmd('migrate-set-parameters', mode='normal')
            err = None
        except QMPError as e:
            err = str(e)
        tap.ok(err and "Parameter 'mode' cannot be changed on the "
               "destination of a cpr-transfer migration" in err,
               'QMP cannot change it during the incoming CPR', err)
        out = dst.hmp('migrate_set_parameter mode normal')
        tap.ok("Parameter 'mode' cannot be changed" in out,
               'HMP cannot either', out)
        dst.cmd('migrate-incoming', channels=[main])
        st = dst.wait_migration_end()
        tap.ok(st == 'completed', 'cpr-transfer migration completes', st)
        mode = dst.cmd('query-migrate-parameters')['mode']
        status = dst.cmd('query-status')['status']
        tap.ok(mode == after and status == 'running',
               'after it, mode is %s' % after, (mode, status))


def report_stock(qemu):
    rc, out = run_qemu(qemu, ['-M', 'none', '-display', 'none',
                              '-incoming', 'config:multifd-channels=4'])
    print('# stock 10.2.2, -incoming config:multifd-channels=4: exit %d: %s'
          % (rc, out.strip()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--stock')
    args = ap.parse_args()
    tap = TAP()
    check_bad(tap, args.qemu)
    check_values(tap, args.qemu)
    check_migration(tap, args.qemu)
    check_cpr(tap, args.qemu)
    check_cpr(tap, args.qemu, config=False)
    if args.stock:
        report_stock(args.stock)
        check_cpr(tap, args.stock, stock=True, config=False)
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())
