#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Local migration of a tap netdev (migration parameter local, tap option
x-local-migration-supported), without a guest, in a network namespace of
its own with a multi_queue tap0.  TAP output.

- command-line order (-incoming config:local=on plus -netdev) and
  upstream's order (-incoming defer, migrate-set-parameters local,
  netdev_add, device_add): the destination holds one tun fd of tap0 per
  queue, the source none once the migration has completed, tap0 keeps
  its ifindex after the source quits, a frame sent on
  tap0 reaches the destination's netdev (filter-dump), the source runs
  no downscript;
- cancel and a destination that dies: the source keeps its fds, and a
  frame sent on tap0 reaches its netdev;
- a destination with exit-on-error=false whose load fails after its
  tap loaded the fds closes them, and leaves the source's queues
  attached, also after a system_reset;
- refused: tap options that open the device on a waiting destination
  (QMP and command line), local changed, a tap with the option added
  and netdev_del of one while the migration runs or loads,
  mismatched queue counts, a destination tap with a device of its own, a
  source that does not pass its fds (behind virtio-net and e1000e),
  vnet_hdr=off, fd= of a tap device without a vnet header, and rss or
  hash on a NIC of a tap with the option.

Needs root, /dev/net/tun and unshare -n: skipped, with the reason, if
any is missing.  Re-runs itself in a new network namespace.
"""

import argparse
import fcntl
import glob
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_vm import (VM, QMPError, TAP, checking, exec_in_netns,  # noqa: E402
                     netns_unavailable, run_qemu, tap_attached_queues)

LOCAL = 'x-local-migration-supported'
ETH_TYPE = 0x88b5  # local experimental


def sh(cmd):
    return subprocess.check_output(cmd, shell=True, text=True)


def make_tap(queues=1):
    """A new tap0, multi_queue if @queues > 1 (a tap opened with one
    queue cannot attach to a multi_queue device)"""
    sh('ip link del tap0 2>/dev/null || true')
    sh('ip tuntap add dev tap0 mode tap%s && ip link set tap0 up'
       % (' multi_queue' if queues > 1 else ''))


def open_tap_without_vnet_hdr():
    """An fd of tap0 without IFF_VNET_HDR"""
    tunsetiff = 0x400454ca
    iff_tap, iff_no_pi = 0x0002, 0x1000
    fd = os.open('/dev/net/tun', os.O_RDWR)
    try:
        fcntl.ioctl(fd, tunsetiff,
                    struct.pack('16sH22x', b'tap0', iff_tap | iff_no_pi))
    except OSError:
        os.close(fd)
        raise
    return fd


def ifindex():
    return sh('ip -o link show tap0').split(':')[0]


def tun_fds(vm):
    """How many fds of @vm are tun fds attached to tap0"""
    n = 0
    for f in glob.glob('/proc/%d/fdinfo/*' % vm.proc.pid):
        try:
            with open(f) as fi:
                n += 'iff:\ttap0' in fi.read()
        except OSError:
            pass
    return n


def attached_queues():
    return tap_attached_queues('tap0')


def send_frame(marker):
    """Send a broadcast frame carrying @marker out of tap0, i.e. to the
    fds of tap0"""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind(('tap0', 0))
        frame = (b'\xff' * 6 + b'\x02\x00\x00\x00\x00\x01' +
                 ETH_TYPE.to_bytes(2, 'big') + marker.encode())
        s.send(frame.ljust(60, b'\0'))
    finally:
        s.close()


def frame_reaches(vm, dump, marker, timeout=10.0):
    """Send frames with @marker until the pcap @dump of @vm shows one"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        send_frame(marker)
        time.sleep(0.2)
        try:
            with open(dump, 'rb') as f:
                if marker.encode() in f.read():
                    return True
        except OSError:
            pass
    return False


class Env:
    def __init__(self, qemu):
        self.qemu = qemu
        self.tmp = tempfile.mkdtemp(prefix='local-tap-')
        self.n = 0

    def path(self, name):
        self.n += 1
        return os.path.join(self.tmp, '%s-%d' % (name, self.n))

    def vm(self, name, args):
        return VM(self.qemu, ['-device', 'pcie-root-port,id=rp0,chassis=1']
                  + list(args), name='%s-%d' % (name, self.n),
                  tmpdir=self.tmp)


def nic(queues, model='virtio-net-pci'):
    return ['-device', '%s,netdev=n0,id=nic0,bus=rp0%s' %
            (model, ',mq=on' if queues > 1 else '')]


def source(env, queues=1, local=True, extra='', more=(),
           model='virtio-net-pci'):
    """A source with a new tap0 in @queues queues, behind a NIC @model; a
    downscript that leaves a mark if it runs"""
    make_tap(queues)
    mark = env.path('downscript-ran')
    script = env.path('down.sh')
    with open(script, 'w') as f:
        f.write('#!/bin/sh\ntouch %s\n' % mark)
    os.chmod(script, 0o755)
    netdev = ('tap,id=n0,ifname=tap0,script=no,downscript=%s,queues=%d%s%s'
              % (script, queues, ',%s=on' % LOCAL if local else '', extra))
    dump = env.path('src.pcap')
    args = ['-netdev', netdev] + nic(queues, model) + list(more)
    if queues == 1:
        args += ['-object', 'filter-dump,id=f0,netdev=n0,file=%s' % dump]
    vm = env.vm('src', args)
    vm.mark = mark
    vm.dump = dump
    return vm.start()


def dest_cmdline(env, sock, queues=1, netdev_extra=''):
    dump = env.path('dst.pcap')
    args = ['-incoming', 'config:local=on', '-incoming', 'unix:' + sock,
            '-netdev', 'tap,id=n0,queues=%d,%s=on%s' %
            (queues, LOCAL, netdev_extra)] + nic(queues)
    if queues == 1:
        args += ['-object', 'filter-dump,id=f0,netdev=n0,file=%s' % dump]
    vm = env.vm('dst', args)
    vm.dump = dump
    return vm.start()


def dest_defer(env, sock, queues=1, exit_on_error=True):
    vm = env.vm('dst', ['-incoming', 'defer']).start()
    vm.dump = env.path('dst.pcap')
    vm.cmd('migrate-set-parameters', local=True)
    vm.cmd('netdev_add', type='tap', id='n0', queues=queues,
           **{LOCAL: True})
    if queues == 1:
        vm.cmd('object-add', **{'qom-type': 'filter-dump', 'id': 'f0',
                                'netdev': 'n0', 'file': vm.dump})
    vm.cmd('device_add', driver='virtio-net-pci', netdev='n0', id='nic0',
           bus='rp0', **({'mq': True} if queues > 1 else {}))
    vm.cmd('migrate-incoming', uri='unix:' + sock,
           **({} if exit_on_error else {'exit-on-error': False}))
    return vm


def migrate(src, sock, local=True):
    src.cmd('migrate-set-capabilities', capabilities=[
        {'capability': 'return-path', 'state': True}])
    if local:
        src.cmd('migrate-set-parameters', local=True)
    src.cmd('migrate', uri='unix:' + sock)
    return src.wait_migration_end(timeout=120)


def again(tap, env, src, what):
    """A second local migration of a source that handed its tap over"""
    path = env.path('again.sock')
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    try:
        src.cmd('cont')     # stock refuses to migrate a postmigrate VM
        src.cmd('migrate', uri='unix:' + path)
        status = src.wait_migration_end(timeout=60)
        err = src.cmd('query-migrate').get('error-desc', '')
        tap.ok(status == 'failed' and "netdev 'n0' handed its tap device "
               "over to the destination of an earlier migration" in err,
               '%s: a second local migration is refused: %s' % (what, err),
               status)
    finally:
        srv.close()


def test_migrate(tap, env, order, queues):
    what = '%s order, %d queue%s' % (order, queues, 's' if queues > 1 else '')
    sock = env.path('mig.sock')
    src = source(env, queues)
    index = ifindex()
    dst = None
    with checking(tap, what, src):
        dst = (dest_cmdline if order == 'command-line' else dest_defer)(
            env, sock, queues)
        with checking(tap, what, dst):
            info = dst.hmp('info network')
            tap.ok(info.count('waiting for the migration') == queues,
                   '%s: the destination tap waits for its fds' % what, info)
            tap.ok(tun_fds(dst) == 0, '%s: the destination opened no tun '
                   'fd' % what)
            status = migrate(src, sock)
            tap.ok(status == 'completed', '%s: migration completed' % what,
                   status + src.output() + dst.output())
            dst.wait_for(lambda: dst.cmd('query-status')['status'] ==
                         'running', 'destination running', timeout=30)
            tap.ok(tun_fds(dst) == queues, '%s: the destination holds %d '
                   'tun fds of tap0' % (what, queues),
                   'holds %d' % tun_fds(dst))
            info = dst.hmp('info network')
            tap.ok(info.count('migrated') == queues,
                   '%s: info network shows the migrated fds' % what, info)
            tap.ok(tun_fds(src) == 0, '%s: the source closed its fds'
                   % what, 'holds %d' % tun_fds(src))
            if order == 'command-line' and queues == 1:
                again(tap, env, src, what)
            src.shutdown()
            tap.ok(ifindex() == index, '%s: tap0 keeps its ifindex after '
                   'the source quits' % what)
            tap.ok(not os.path.exists(src.mark), '%s: the source ran no '
                   'downscript' % what)
            if queues == 1:
                tap.ok(frame_reaches(dst, dst.dump, 'to-dst-%d' % env.n),
                       '%s: a frame sent on tap0 reaches the destination'
                       % what)
            tap.ok(dst.shutdown() == 0, '%s: the destination quits'
                   % what, dst.output())


def start_slow_migration(src, sock):
    """A local migration at 1 MiB/s, so that it stays active"""
    src.cmd('migrate-set-capabilities', capabilities=[
        {'capability': 'return-path', 'state': True}])
    src.cmd('migrate-set-parameters', local=True,
            **{'max-bandwidth': 1024 * 1024})
    src.cmd('migrate', uri='unix:' + sock)
    src.wait_for(lambda: src.migration_status() == 'active',
                 'migration active', timeout=30)


def test_source_kept(tap, env, how):
    """A migration that does not complete leaves the source its fds"""
    what = 'source after %s' % how
    sock = env.path('mig.sock')
    src = source(env)
    with checking(tap, what, src):
        dst = dest_cmdline(env, sock)
        with checking(tap, what, dst):
            start_slow_migration(src, sock)
            try:
                src.cmd('migrate-set-parameters', local=False)
                tap.ok(False, 'local cannot change while the migration '
                       'runs')
            except QMPError as e:
                tap.ok("'local'" in str(e) and 'migration' in str(e),
                       'local cannot change while the migration runs: %s'
                       % e)
            try:
                src.cmd('netdev_add', type='tap', id='n9',
                        **{LOCAL: True})
                tap.ok(False, 'no tap with %s added while the migration '
                       'runs' % LOCAL)
            except QMPError as e:
                tap.ok('cannot be created while a migration runs' in str(e),
                       'no tap with %s added while the migration runs: %s'
                       % (LOCAL, e))
            for vm, side in ((src, 'source'), (dst, 'destination')):
                try:
                    vm.cmd('netdev_del', id='n0')
                    tap.ok(False, 'netdev_del refused on the %s while the '
                           'migration runs' % side)
                except QMPError as e:
                    tap.ok("netdev 'n0' cannot be deleted while a "
                           "migration runs or loads" in str(e),
                           'netdev_del refused on the %s while the '
                           'migration runs: %s' % (side, e))
            if how == 'cancel':
                src.cmd('migrate_cancel')
            else:
                dst.proc.kill()
            status = src.wait_migration_end(timeout=60)
            tap.ok(status == ('cancelled' if how == 'cancel' else 'failed'),
                   '%s: the source reports %s' % (what, status))
            src.wait_for(lambda: src.cmd('query-status')['status'] ==
                         'running', 'source running', timeout=30)
            tap.ok(tun_fds(src) == 1, '%s: the source keeps its tun fd'
                   % what)
            tap.ok(frame_reaches(src, src.dump, 'to-src-%d' % env.n),
                   '%s: a frame sent on tap0 reaches the source' % what)
            if how == 'cancel':
                try:
                    src.cmd('netdev_del', id='n0')
                    err = ''
                except QMPError as e:
                    err = str(e)
                tap.ok("netdev 'n0' cannot be deleted while NIC 'nic0' "
                       "uses it" in err, '%s: netdev_del refused while the '
                       'NIC uses the tap: %s' % (what, err))
                # without a NIC, once the migration has ended
                sh('ip tuntap add dev tap9 mode tap 2>/dev/null || true')
                src.cmd('netdev_add', type='tap', id='n9', ifname='tap9',
                        script='no', downscript='no', **{LOCAL: True})
                src.cmd('netdev_del', id='n9')
                tap.ok(os.path.exists('/proc/%d/fd/0' % src.proc.pid),
                       '%s: netdev_del closes nothing but the tap\'s fds '
                       '(fd 0 stays open)' % what)
                src.cmd('netdev_add', type='tap', id='n9', ifname='tap9',
                        script='no', downscript='no', **{LOCAL: True})
                info = src.hmp('info network')
                tap.ok('n9:' in info and tun_fds(src) == 1,
                       '%s: a tap with %s and no NIC is created, deleted '
                       'and created again once the migration has ended'
                       % (what, LOCAL), info)
        src.shutdown()
        tap.ok(os.path.exists(src.mark), '%s: the source runs its '
               'downscript when it quits' % what)


def test_quit_while_migrating(tap, env):
    """A source quits while its local migration runs: the taps go while
    the migration thread may still walk their sections (one tap with a
    NIC, one without)"""
    what = 'quit while migrating'
    sock = env.path('mig.sock')
    sh('ip link del tap8 2>/dev/null || true; ip tuntap add dev tap8 '
       'mode tap')
    src = source(env, more=['-netdev', 'tap,id=n8,ifname=tap8,script=no,'
                            'downscript=no,%s=on' % LOCAL])
    with checking(tap, what, src):
        dst = dest_cmdline(env, sock)
        with checking(tap, what, dst):
            start_slow_migration(src, sock)
            rc = src.shutdown()
            tap.ok(rc == 0, '%s: the source exits with status 0' % what,
                   'status %s: %s' % (rc, src.output()))
            dst.shutdown()


def expect_load_failure(tap, env, what, error, src_args, dst_netdev,
                        local=True, dst_local=True):
    """The destination's load fails with @error; the source learns it by
    the return path, and its guest runs on with its fds"""
    sock = env.path('mig.sock')
    src = source(env, **src_args)
    queues = src_args.get('queues', 1)
    with checking(tap, what, src):
        args = ['-incoming', 'unix:' + sock, '-netdev', dst_netdev]
        args += nic(queues, src_args.get('model', 'virtio-net-pci'))
        if dst_local:
            args = ['-incoming', 'config:local=on'] + args
        dst = env.vm('dst', args)
        dst.launch()
        with checking(tap, what, dst):
            dst.connect()
            status = migrate(src, sock, local=local)
            dst.proc.wait(30)
            out = dst.output()
            tap.ok(status == 'failed' and dst.proc.returncode == 1 and
                   error in out, '%s: refused: %s' % (what, error),
                   'source %s, destination status %s:\n%s'
                   % (status, dst.proc.returncode, out))
            src.wait_for(lambda: src.cmd('query-status')['status'] ==
                         'running', 'source running', timeout=30)
            tap.ok(tun_fds(src) == queues,
                   '%s: the source keeps its fds' % what)


def test_refused(tap, env):
    sock = env.path('mig.sock')
    make_tap()
    for opt in ('ifname=tap0', 'fd=3', 'fds=3:4', 'script=/bin/true',
                'downscript=no', 'helper=/bin/true', 'br=br0',
                'vnet_hdr=on', 'sndbuf=1024'):
        name = opt.split('=')[0]
        err = ('%s= cannot be given to a tap that takes its file '
               'descriptors from a local migration' % name)
        status, out = run_qemu(env.qemu, [
            '-nodefaults', '-display', 'none', '-M', 'none',
            '-incoming', 'config:local=on', '-incoming', 'unix:' + sock,
            '-netdev', 'tap,id=n0,%s=on,%s' % (LOCAL, opt)])
        tap.ok(status == 1 and err in out,
               'command line: %s refused on a waiting tap' % name,
               'status %d: %s' % (status, out))
    vm = env.vm('dst', ['-incoming', 'defer']).start()
    with checking(tap, 'netdev_add', vm):
        vm.cmd('migrate-set-parameters', local=True)
        try:
            vm.cmd('netdev_add', type='tap', id='n0', ifname='tap0',
                   **{LOCAL: True})
            tap.ok(False, 'netdev_add: ifname refused on a waiting tap')
        except QMPError as e:
            tap.ok('ifname= cannot be given' in str(e),
                   'netdev_add: ifname refused on a waiting tap: %s' % e)
        # without the option, a tap opens its device as always
        vm.cmd('netdev_add', type='tap', id='n1', ifname='tap0',
               script='no', downscript='no')
        tap.ok(tun_fds(vm) == 1, 'a tap without %s opens tap0 on a '
               'destination with local' % LOCAL)

    expect_load_failure(
        tap, env, 'queue count', "netdev 'n0' has 1 queues, but the source "
        "has 2", {'queues': 2}, 'tap,id=n0,%s=on' % LOCAL)
    expect_load_failure(
        tap, env, 'destination tap of its own', "netdev 'n0' has a tap "
        "device of its own, but the source passes it its file descriptors",
        {'queues': 2}, 'tap,id=n0,ifname=tap0,script=no,downscript=no,'
        'queues=2,%s=on' % LOCAL, dst_local=False)
    expect_load_failure(
        tap, env, 'source without local', "netdev 'n0' waits for the file "
        "descriptors of a local migration, which the source did not send",
        {}, 'tap,id=n0,%s=on' % LOCAL, local=False)
    # the end of the load finds it, whatever the NIC
    expect_load_failure(
        tap, env, 'source without local, e1000e', "netdev 'n0' waits for "
        "the file descriptors of a local migration, which the source did "
        "not send", {'model': 'e1000e'}, 'tap,id=n0,%s=on' % LOCAL,
        local=False)

    # options that the migration of the fds cannot take
    make_tap()
    for what, args, err in (
            ('vnet_hdr=off', ['-netdev', 'tap,id=n0,ifname=tap0,script=no,'
                              'downscript=no,vnet_hdr=off,%s=on' % LOCAL],
             'vnet_hdr=off cannot be given with x-local-migration-supported: '
             "the destination's NIC must know the vnet header before the "
             'fds come'),
            ('rss=on', ['-netdev', 'tap,id=n0,ifname=tap0,script=no,'
                        'downscript=no,%s=on' % LOCAL, '-device',
                        'virtio-net-pci,netdev=n0,rss=on'],
             "rss=on or hash=on cannot be used with netdev 'n0' "
             "(x-local-migration-supported=on)"),
            ('hash=on on a waiting tap',
             ['-incoming', 'config:local=on', '-incoming', 'unix:' + sock,
              '-netdev', 'tap,id=n0,%s=on' % LOCAL, '-device',
              'virtio-net-pci,netdev=n0,hash=on'],
             "rss=on or hash=on cannot be used with netdev 'n0' "
             "(x-local-migration-supported=on)")):
        status, out = run_qemu(env.qemu, [
            '-nodefaults', '-display', 'none', '-M', 'q35'] + args)
        tap.ok(status == 1 and err in out, 'command line: %s refused with '
               '%s' % (what, LOCAL), 'status %d: %s' % (status, out))

    # fd= of a tap device opened without a vnet header
    make_tap()
    fd = open_tap_without_vnet_hdr()
    try:
        p = subprocess.run(
            [env.qemu, '-nodefaults', '-display', 'none', '-M', 'none',
             '-netdev', 'tap,id=n0,fd=%d,%s=on' % (fd, LOCAL)],
            pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=60)
    finally:
        os.close(fd)
    err = ('the tap device has no vnet header (IFF_VNET_HDR), which '
           'x-local-migration-supported needs')
    tap.ok(p.returncode == 1 and err in p.stdout, 'command line: fd= of a '
           'tap device without a vnet header refused with %s' % LOCAL,
           'status %d: %s' % (p.returncode, p.stdout))


def test_failed_destination_stays(tap, env):
    """A destination that does not exit when its load fails
    (exit-on-error=false) fails after its tap loaded the fds (the source
    has a device more): it closes them, and neither its load nor a
    system_reset changes which queues of the source's tap device are
    attached (without a guest driver, the NIC uses one queue pair: the
    guest test local-mq-fail has one that uses two)"""
    what = 'failed destination with exit-on-error=false'
    sock = env.path('mig.sock')
    src = source(env, queues=2, more=['-device', 'virtio-rng-pci'])
    with checking(tap, what, src):
        attached = attached_queues()
        dst = dest_defer(env, sock, queues=2, exit_on_error=False)
        with checking(tap, what, dst):
            status = migrate(src, sock)
            dst.wait_for(lambda: dst.migration_status() == 'failed',
                         'failed load', timeout=30)
            err = dst.cmd('query-migrate').get('error-desc', '')
            tap.ok(status == 'failed' and 'virtio-rng' in err,
                   '%s: the load fails on the device the destination '
                   'lacks: %s' % (what, err), status)
            tap.ok(tun_fds(dst) == 0, '%s: the destination closed the fds '
                   'it received' % what, 'holds %d' % tun_fds(dst))
            info = dst.hmp('info network')
            tap.ok(info.count('migration failed,no fd') == 2,
                   '%s: info network says so' % what, info)
            src.wait_for(lambda: src.cmd('query-status')['status'] ==
                         'running', 'source running', timeout=30)
            tap.ok(tun_fds(src) == 2 and attached_queues() == attached,
                   '%s: the source keeps its fds, and %d queue(s) '
                   'attached' % (what, attached),
                   'holds %d, attached %d' % (tun_fds(src),
                                              attached_queues()))
            dst.cmd('system_reset')
            time.sleep(0.5)
            tap.ok(attached_queues() == attached, '%s: and after a '
                   'system_reset of the destination' % what,
                   'attached %d' % attached_queues())


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--in-netns', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args()
    tap = TAP()
    if not args.in_netns:
        why = netns_unavailable()
        if why:
            tap.skip('local migration of tap netdevs', why)
            return tap.done()
        exec_in_netns([os.path.abspath(__file__), '--in-netns',
                       '--qemu', args.qemu])
    try:
        sh('ip link set lo up')
        make_tap()
    except subprocess.CalledProcessError as e:
        tap.skip('local migration of tap netdevs',
                 'cannot create a tap device: %s' % e)
        return tap.done()
    env = Env(os.path.abspath(args.qemu))
    tests = [(test_migrate, order, queues)
             for order in ('command-line', 'defer') for queues in (1, 2)]
    tests += [(test_source_kept, 'cancel'),
              (test_source_kept, 'a dead destination'),
              (test_quit_while_migrating,),
              (test_failed_destination_stays,),
              (test_refused,)]
    for test, *targs in tests:
        try:
            test(tap, env, *targs)
        except (QMPError, RuntimeError, TimeoutError, OSError,
                subprocess.SubprocessError) as e:
            tap.ok(False, '%s%r: %r' % (test.__name__, tuple(targs), e))
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())
