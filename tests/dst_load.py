#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The destination while it loads a precopy stream, over real QMP sockets.

Two QEMUs (-M q35 -S, no guest code) migrate over a UNIX socket, the
source held to a bandwidth that makes the load last a few seconds.

- responsive: with 1 GiB of zero pages, and with 256 MiB of random
  data (the source maps a file of random bytes), the destination
  answers query-status, query-migrate and HMP info status while it
  loads, says "active" several times, and the migration completes;
- source killed: SIGKILL to the source in the middle of the load
  leaves the destination's migration failed and its monitor answering
  (exit-on-error false); with exit-on-error true the destination exits
  with status 1 and says that the load failed;
- yank: yank on the destination ends its load the same way;
- quit: quit on the destination in the middle of its load ends it with
  status 0;
- hotplug: with --series, device_add and device_del (QMP, and HMP
  device_add), HMP savevm and loadvm, and device-sync-config are
  refused while the destination loads, with their error text, and
  device_del is taken once the load has failed; on
  stock, what device_add does is printed (it takes it);
- with --series: the load thread (mig/dst/main) is there while the
  destination loads, and the trace event qemu_loadvm_section_bql
  reports how long each START/FULL section held the BQL (the longest
  hold is printed).

usage: dst_load.py --qemu BINARY [--series]
"""

import argparse
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_vm import VM, TAP, QMPError, checking  # noqa: E402

MIB = 1024 * 1024


def vm(qemu, name, ram_mib, args, tmpdir=None):
    v = VM(qemu, name=name, tmpdir=tmpdir, machine='q35,memory-backend=mem0',
           args=['-S', '-name', name + ',debug-threads=on'] + args)
    v.args[v.args.index('64M')] = '%dM' % ram_mib
    return v


def start_pair(qemu, name, ram_mib, random, bandwidth, exit_on_error=False,
               dst_args=(), both_args=()):
    """Start a source and a destination, and the migration between them."""
    ram = 'memory-backend-ram,id=mem0,size=%dM' % ram_mib
    dst = vm(qemu, name + '-dst', ram_mib,
             ['-object', ram, '-incoming', 'defer'] + list(dst_args) +
             list(both_args))
    if random:
        path = os.path.join(dst.tmpdir, 'random.ram')
        with open(path, 'wb') as f:
            for _ in range(ram_mib):
                f.write(os.urandom(MIB))
        ram = ('memory-backend-file,id=mem0,size=%dM,mem-path=%s,'
               'share=off' % (ram_mib, path))
    src = vm(qemu, name + '-src', ram_mib, ['-object', ram] + list(both_args),
             dst.tmpdir)
    dst.start()
    src.start()
    sock = os.path.join(dst.tmpdir, 'mig.sock')
    dst.cmd('migrate-incoming', uri='unix:' + sock,
            **{'exit-on-error': exit_on_error})
    src.cmd('migrate-set-parameters', **{'max-bandwidth': bandwidth})
    src.cmd('migrate', uri='unix:' + sock)
    return src, dst


def wait_active(dst):
    dst.wait_for(lambda: dst.migration_status() == 'active',
                 'the load to start', timeout=60, interval=0.01)


def poll_until_end(dst, threads=None):
    """Query the destination until its migration ends; return the end
    status, how often it said active, and the longest round trip."""
    active, longest = 0, 0.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        status = dst.migration_status()
        dst.cmd('query-status')
        info = dst.hmp('info status')
        longest = max(longest, time.monotonic() - t0)
        if threads is not None and status == 'active':
            threads.update(thread_names(dst))
        if status in ('completed', 'failed', 'cancelled'):
            return status, active, longest, info
        if status == 'active':
            active += 1
        time.sleep(0.02)
    return 'timeout', active, longest, ''


def thread_names(v):
    names = set()
    task = '/proc/%d/task' % v.proc.pid
    try:
        for t in os.listdir(task):
            with open(os.path.join(task, t, 'comm')) as f:
                names.add(f.read().strip())
    except OSError:
        pass
    return names


def check_responsive(tap, qemu, series):
    for variant, ram_mib, random, bw in (('zero', 1024, False, 1 * MIB),
                                          ('random', 256, True, 64 * MIB)):
        dst_args = []
        if series:
            dst_args = ['-trace', 'qemu_loadvm_section_bql']
        src, dst = start_pair(qemu, variant, ram_mib, random, bw,
                              dst_args=dst_args)
        with checking(tap, variant, dst, src):
            threads = set()
            status, active, longest, info = poll_until_end(dst, threads)
            tap.ok(status == 'completed' and active >= 3,
                   '%s: destination answers while it loads' % variant,
                   '%s, active %d times, longest round trip %.1f ms' %
                   (status, active, longest * 1000))
            print('# %s: %d answers "active", longest round trip %.1f ms'
                  % (variant, active, longest * 1000))
            if series:
                tap.ok('mig/dst/main' in threads,
                       '%s: the load runs in mig/dst/main' % variant,
                       sorted(threads))
                dst.shutdown()
                held = [int(m.group(2)) for m in re.finditer(
                    r'qemu_loadvm_section_bql (\S+ \d+ type=\d+): BQL held '
                    r'(\d+) us', dst.output())]
                tap.ok(len(held) > 0, '%s: BQL hold traced for %d sections'
                       % (variant, len(held)), dst.output()[-2000:])
                if held:
                    print('# %s: longest BQL hold of a section: %d us'
                          % (variant, max(held)))


def check_end(tap, qemu, how):
    src, dst = start_pair(qemu, how, 256, True, 16 * MIB)
    with checking(tap, how, dst, src):
        wait_active(dst)
        if how == 'source killed':
            src.proc.send_signal(signal.SIGKILL)
        elif how == 'yank':
            dst.cmd('yank', instances=[{'type': 'migration'}])
        status, _, _, info = poll_until_end(dst)
        tap.ok(status == 'failed' and 'inmigrate' in info,
               '%s: the load fails, the destination answers' % how,
               (status, info))
        if how == 'yank':
            st = src.wait_migration_end()
            tap.ok(st == 'failed', 'yank: the source fails too', st)


def check_hotplug(tap, qemu, series):
    """device_add and device_del while the destination loads: the
    series refuses them (QMP and HMP), and takes them again after."""
    src, dst = start_pair(qemu, 'hotplug', 256, True, 16 * MIB,
                          both_args=['-device', 'pcie-root-port,id=rp0,'
                                     'chassis=1', '-device',
                                     'pcie-root-port,id=rp1,chassis=2',
                                     '-device', 'pci-testdev,id=td,bus=rp0'])
    with checking(tap, 'hotplug', dst, src):
        wait_active(dst)
        if not series:
            # device_add drains the RCU callbacks, which a load can hold
            # up: do not wait for an answer as long as usual
            dst.qmp.sock.settimeout(10)
            try:
                dst.cmd('device_add', driver='pci-testdev', id='td2',
                        bus='rp1')
                print('# stock: device_add accepted during the load')
            except QMPError as e:
                print('# stock: device_add during the load: %s' % e.desc)
            except TimeoutError:
                print('# stock: device_add during the load: no answer in '
                      '10 s (the destination hangs)')
            return
        errors = {}
        for cmd, args in (('device_add', {'driver': 'pci-testdev',
                                          'id': 'td2', 'bus': 'rp1'}),
                          ('device_del', {'id': 'td'})):
            try:
                dst.cmd(cmd, args)
                errors[cmd] = None
            except QMPError as e:
                errors[cmd] = e.desc
        hmp = dst.hmp('device_add pci-testdev,id=td3,bus=rp1')
        savevm = dst.hmp('savevm snap0')
        loadvm = dst.hmp('loadvm snap0')
        try:
            dst.cmd('device-sync-config', id='td')
            sync = None
        except QMPError as e:
            sync = e.desc
        still = dst.migration_status()
        for cmd in ('device_add', 'device_del'):
            want = ('%s not allowed while an incoming migration loads'
                    % cmd)
            tap.ok(errors[cmd] == want and still == 'active',
                   'hotplug: QMP %s refused during the load' % cmd,
                   (errors[cmd], still))
        tap.ok('device_add not allowed while an incoming migration '
               'loads' in hmp, 'hotplug: HMP device_add refused during '
               'the load', hmp)
        want = 'Snapshots are not allowed while an incoming migration loads'
        tap.ok(want in savevm and want in loadvm,
               'snapshots: HMP savevm and loadvm refused during the load',
               (savevm, loadvm))
        tap.ok(sync == 'Config synchronization is not allowed while an '
               'incoming migration loads',
               'device-sync-config refused during the load', sync)
        src.cmd('migrate_cancel')
        status, _, _, _ = poll_until_end(dst)
        try:
            dst.cmd('device_del', id='td')
            after = None
        except QMPError as e:
            after = e.desc
        tap.ok(status == 'failed' and after is None,
               'hotplug: device_del taken once the load has failed',
               (status, after))


def check_exit_on_error(tap, qemu):
    src, dst = start_pair(qemu, 'exit', 256, True, 16 * MIB,
                          exit_on_error=True)
    try:
        wait_active(dst)
        src.proc.send_signal(signal.SIGKILL)
        rc = dst.proc.wait(60)
        out = dst.output()
        tap.ok(rc == 1 and 'load of migration failed' in out,
               'exit-on-error: the destination exits 1 and says why',
               '%d: %s' % (rc, out[-1000:]))
    except Exception as e:  # noqa: BLE001
        tap.ok(False, 'exit-on-error: unexpected exception: %r' % e,
               dst.output())
    finally:
        dst.cleanup()
        src.cleanup()


def check_quit(tap, qemu):
    src, dst = start_pair(qemu, 'quit', 256, True, 16 * MIB)
    try:
        wait_active(dst)
        t0 = time.monotonic()
        try:
            dst.cmd('quit')
        except (OSError, EOFError, QMPError):
            pass
        rc = dst.proc.wait(60)
        tap.ok(rc == 0, 'quit during the load: status 0 after %.2f s'
               % (time.monotonic() - t0), '%d: %s' % (rc, dst.output()))
    except Exception as e:  # noqa: BLE001
        tap.ok(False, 'quit: unexpected exception: %r' % e, dst.output())
    finally:
        dst.cleanup()
        src.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--series', action='store_true')
    args = ap.parse_args()
    tap = TAP()
    check_responsive(tap, args.qemu, args.series)
    check_end(tap, args.qemu, 'source killed')
    check_end(tap, args.qemu, 'yank')
    check_hotplug(tap, args.qemu, args.series)
    check_exit_on_error(tap, args.qemu)
    check_quit(tap, args.qemu)
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())
