#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Local migration of a tap netdev with a real guest (tests/guestlib.py:
Debian's kernel and a busybox initramfs, downloaded once and cached),
in a network namespace of its own.  The host pings the guest's
virtio-net NIC through tap0 every 10 ms while the guest migrates, and
counts the lost replies:

- local: the destination takes tap0's fd (-incoming config:local=on
  and -netdev on its command line);
- local-defer: the same in upstream's order (-incoming defer,
  migrate-set-parameters local, netdev_add, device_add,
  migrate-incoming);
- local-mq: as local, with a multi_queue tap2 in two queues, a
  virtio-net NIC with mq=on and a guest with two CPUs, which uses both
  queue pairs;
- plain: tap0 and tap1 are ports of a bridge br0 that has the host's
  address, the source uses tap0 and the destination opens tap1 (QEMU's
  self-announce moves the guest's MAC to the new port);
- local-vhost, local-defer-vhost, local-mq-vhost: local, local-defer
  and local-mq with vhost=on on both sides: the destination opens its
  vhost devices (one per queue pair) when the netdev is created and
  starts vhost-net on the fds that came; after local-vhost, cont on
  the source must not reach the tap device through vhost-net;
- vhost-fail: local with vhost=on to a destination whose netdev has
  two queues: the load fails after the source stopped its vhost-net
  and sent the fd, and the source must run on, its vhost-net started
  again on its own fd;
- local-mq-fail: local-mq in upstream's order to a destination with
  exit-on-error=false that lacks a device of the source: its load fails
  after its tap loaded the fds, it stays, and a system_reset of it must
  not detach the second queue of tap2, which the source's guest uses.

Where the kernel has no vhost-net (no /dev/vhost-net), the vhost
modes preload tests/fake_vhost_net.c, built here, into both QEMUs: a
userspace model of the kernel's device that moves the packets between
the guest's rings and the tap fd, and logs what QEMU asks of it, so
the checks also see that the destination opened its vhost device
before the migration and that vhost-net, not QEMU, carried the pings
after it.  With the kernel's device, they check that the destination
holds /dev/vhost-net open.

Checks: the guest answers before and after each migration, replies are
lost only around the downtime QEMU reports (at most the downtime plus
--slack-ms), and the destination runs the guest.  With --json FILE,
the figures are written there (bench/local_tap.py uses them).

Needs root, /dev/net/tun, unshare -n and the Debian archive (first
run): skipped, with the reason, if any is missing.
"""

import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guestlib  # noqa: E402
from qemu_vm import (VM, QMPError, TAP, exec_in_netns,  # noqa: E402
                     netns_unavailable, tap_attached_queues)

GUEST = '10.0.0.2'
LOCAL = 'x-local-migration-supported'


def sh(cmd):
    return subprocess.check_output(cmd, shell=True, text=True)


def checksum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff


class Pinger:
    """ICMP echo requests to @addr every @interval s, in a thread; the
    times of the requests and of their replies"""

    def __init__(self, addr, interval=0.01):
        self.addr = addr
        self.interval = interval
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW,
                                  socket.IPPROTO_ICMP)
        self.sock.settimeout(0.2)
        self.ident = os.getpid() & 0xffff
        self.sent = {}
        self.replies = {}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._send),
                        threading.Thread(target=self._recv)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        self.sock.close()

    def _send(self):
        seq = 0
        while not self.stop.is_set():
            seq = (seq + 1) & 0xffff
            hdr = struct.pack('!BBHHH', 8, 0, 0, self.ident, seq)
            pkt = struct.pack('!BBHHH', 8, 0, checksum(hdr + b'x' * 32),
                              self.ident, seq) + b'x' * 32
            self.sent[seq] = time.monotonic()
            try:
                self.sock.sendto(pkt, (self.addr, 0))
            except OSError:
                pass
            time.sleep(self.interval)

    def _recv(self):
        while not self.stop.is_set():
            try:
                data = self.sock.recv(2048)
            except (socket.timeout, OSError):
                continue
            ihl = (data[0] & 0xf) * 4
            typ, _, _, ident, seq = struct.unpack('!BBHHH',
                                                  data[ihl:ihl + 8])
            if typ == 0 and ident == self.ident:
                self.replies.setdefault(seq, time.monotonic())

    def stats(self, since, until):
        """Requests sent in [since, until]: (sent, lost, longest run of
        lost requests in seconds)"""
        seqs = sorted((t, s) for s, t in self.sent.items()
                      if since <= t <= until)
        lost = [t for t, s in seqs if s not in self.replies]
        gap = run_start = 0.0
        prev_lost = False
        for t, s in seqs:
            if s not in self.replies:
                if not prev_lost:
                    run_start = t
                gap = max(gap, t - run_start + self.interval)
                prev_lost = True
            else:
                prev_lost = False
        return len(seqs), len(lost), gap


def wait_ready(serial, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(serial, errors='replace') as f:
                if 'GUEST-READY' in f.read():
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def answers(addr, timeout=20):
    """Does the guest answer a ping within @timeout?"""
    p = Pinger(addr, 0.05).start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if p.replies:
                return True
            time.sleep(0.05)
        return False
    finally:
        p.finish()


MODES = ('local', 'local-defer', 'plain', 'local-mq', 'local-vhost',
         'local-defer-vhost', 'local-mq-vhost', 'vhost-fail',
         'local-mq-fail')
# the modes whose destination fails, with the error it must report
FAILS = {'vhost-fail': "netdev 'n0' has 2 queues, but the source has 1",
         'local-mq-fail': "Unknown section or instance "
                          "'0000:00:02.0/virtio-rng'"}


def vhost_shim(tmp):
    """The userspace vhost-net for the vhost modes: None where the
    kernel has one, else the path of the built preload library; raises
    RuntimeError if it cannot be built"""
    if os.path.exists('/dev/vhost-net'):
        return None
    so = os.path.join(tmp, 'fake_vhost_net.so')
    if not os.path.exists(so):
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           'fake_vhost_net.c')
        p = subprocess.run(['gcc', '-shared', '-fPIC', '-O2', '-Wall',
                            '-o', so, src, '-ldl', '-lpthread'],
                           capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError('cannot build fake_vhost_net.so: %s'
                               % p.stderr)
    return so


def vhost_log(path):
    """The lines of a fake_vhost_net log, without the pid"""
    try:
        with open(path) as f:
            return [line.split(' ', 1)[1].strip() for line in f]
    except OSError:
        return []


def vhost_packets(lines):
    """Packets moved per queue (rx, tx) by the devices of a log, as the
    detach lines count them"""
    rx = tx = 0
    for line in lines:
        words = dict(w.split('=', 1) for w in line.split()[1:] if '=' in w)
        if line.startswith('detach'):
            if words['vq'] == '0':
                rx += int(words['packets'])
            else:
                tx += int(words['packets'])
    return rx, tx


def holds_vhost(pid):
    """Does process @pid hold the kernel's /dev/vhost-net open?"""
    d = '/proc/%d/fd' % pid
    try:
        return any(os.readlink(os.path.join(d, f)) == '/dev/vhost-net'
                   for f in os.listdir(d))
    except OSError:
        return False


def check_vhost(r, shim, src_log, dst_log, dst_before, dst_pid_held):
    """Add to the figures @r what the vhost devices did; the problems
    found, as a list of strings"""
    bad = []
    if shim is None:
        r['vhost'] = 'kernel'
        if not dst_pid_held:
            bad.append('the destination does not hold /dev/vhost-net')
        return bad
    r['vhost'] = 'userspace model'
    src, dst = vhost_log(src_log), vhost_log(dst_log)
    if r['mode'] == 'vhost-fail':
        attached = [line for line in src if line.startswith('backend')]
        # started, then started again on the same fd after the failure
        if len([a for a in attached if a.startswith('backend vq=0')]) < 2:
            bad.append('the source did not start vhost-net again: %r'
                       % src)
        r['src_rx'], r['src_tx'] = vhost_packets(src)
        return bad
    # a vhost device per queue pair
    if [line.split()[0] for line in dst_before] != ['open'] * r['queues']:
        bad.append('the destination did not open its vhost devices, '
                   'and only that, before the migration: %r' % dst_before)
    for vq in (0, 1):
        if dst.count('backend vq=%d ifname=%s' % (vq, r['tap'])) != \
                r['queues']:
            bad.append('the destination\'s vhost-net did not get %s on '
                       'vq %d of each queue pair: %r' % (r['tap'], vq, dst))
    if r['mode'] == 'local-vhost':
        # after the hand-over (the first detach), cont: vhost-net gets
        # the /dev/null that holds the number of the fd, not a tap
        first = next((i for i, line in enumerate(src)
                      if line.startswith('detach')), len(src))
        after = src[first:]
        if not r['answers_after_cont'] or \
                any(line.startswith('backend') for line in after) or \
                not any(line.startswith('refused backend') for line in after):
            bad.append('cont on the source after the hand-over: the '
                       'destination answers: %s; source vhost: %r'
                       % (r['answers_after_cont'], after))
    r['src_rx'], r['src_tx'] = vhost_packets(src)
    r['dst_rx'], r['dst_tx'] = vhost_packets(dst)
    if not r['src_rx'] or not r['dst_rx'] or not r['dst_tx']:
        bad.append('vhost-net did not carry the pings: source rx %d, '
                   'destination rx %d tx %d' % (r['src_rx'], r['dst_rx'],
                                                r['dst_tx']))
    return bad


def run(qemu, mode, tmp, guest_args):
    """One migration of the guest, @mode one of MODES; the figures, or
    raises"""
    sock = os.path.join(tmp, mode + '.sock')
    serial = os.path.join(tmp, mode + '-src.serial')
    port = ['-device', 'pcie-root-port,id=rp0,chassis=1']
    mq = mode.startswith('local-mq')
    vhost = 'vhost' in mode
    base = {'vhost-fail': 'local', 'local-mq-fail': 'local-defer'}.get(
        mode, mode.replace('-vhost', ''))
    fails = mode.endswith('-fail')
    opt = ',vhost=on' if vhost else ''
    nic = port + ['-device', 'virtio-net-pci,netdev=n0,bus=rp0,'
                  'mac=52:54:00:12:34:56%s' % (',mq=on' if mq else '')]
    src_tap = 'tap,id=n0,ifname=tap0,script=no,downscript=no' + opt
    if mq:
        guest_args = guest_args + ['-smp', '2']
        src_tap = ('tap,id=n0,ifname=tap2,script=no,downscript=no,'
                   'queues=2' + opt)
    if base in ('local', 'local-mq'):
        src_tap += ',%s=on' % LOCAL
        dst_args = ['-incoming', 'config:local=on', '-incoming',
                    'unix:' + sock, '-netdev', 'tap,id=n0,%s=on%s%s'
                    % (LOCAL, ',queues=2' if mq or mode == 'vhost-fail'
                       else '', opt)]
    elif base == 'local-defer':
        src_tap += ',%s=on' % LOCAL
        dst_args = ['-incoming', 'defer']
    else:
        dst_args = ['-incoming', 'unix:' + sock, '-netdev',
                    'tap,id=n0,ifname=tap1,script=no,downscript=no']
    shim = vhost_shim(tmp) if vhost else None
    logs = [os.path.join(tmp, '%s-%s.vhost' % (mode, side))
            for side in ('src', 'dst')]
    envs = [None, None]
    if shim:
        for i, log in enumerate(logs):
            if os.path.exists(log):
                os.unlink(log)
            envs[i] = dict(os.environ, LD_PRELOAD=shim,
                           FAKE_VHOST_NET_LOG=log)
    # a device the destination lacks: its load fails after the taps'
    more = ['-device', 'virtio-rng-pci'] if mode == 'local-mq-fail' else []
    src = VM(qemu, guest_args + ['-serial', 'file:' + serial, '-netdev',
                                 src_tap] + nic + more, name=mode + '-src',
             tmpdir=tmp, env=envs[0])
    dst = VM(qemu, guest_args + ['-serial', 'null'] + dst_args +
             (port if base == 'local-defer' else nic),
             name=mode + '-dst', tmpdir=tmp, env=envs[1])
    try:
        src.start()
        if not wait_ready(serial):
            raise RuntimeError('the guest did not boot: %s'
                               % open(serial, errors='replace').read()[-500:])
        if not answers(GUEST):
            raise RuntimeError('the guest does not answer before migrating')
        queues = open(serial, errors='replace').read().count('rx-')
        if queues != (2 if mq else 1):
            raise RuntimeError('the guest has %d rx queues' % queues)
        dst.start()
        if base == 'local-defer':
            dst.cmd('migrate-set-parameters', local=True)
            dst.cmd('netdev_add', type='tap', id='n0',
                    **dict({LOCAL: True}, **({'vhost': True} if vhost
                                             else {}),
                           **({'queues': 2} if mq else {})))
            dst.cmd('device_add', driver='virtio-net-pci', netdev='n0',
                    bus='rp0', mac='52:54:00:12:34:56',
                    **({'mq': True} if mq else {}))
            # local-mq-fail: the destination stays when its load fails
            dst.cmd('migrate-incoming', uri='unix:' + sock,
                    **({'exit-on-error': False} if mode == 'local-mq-fail'
                       else {}))
        dst_before = vhost_log(logs[1])
        dst_held = vhost and shim is None and holds_vhost(dst.proc.pid)
        src.cmd('migrate-set-capabilities', capabilities=[
            {'capability': 'return-path', 'state': True}])
        if base != 'plain':
            src.cmd('migrate-set-parameters', local=True)
        pinger = Pinger(GUEST).start()
        time.sleep(1.0)
        t0 = time.monotonic()
        src.cmd('migrate', uri='unix:' + sock)
        status = src.wait_migration_end(timeout=300)
        t1 = time.monotonic()
        info = src.cmd('query-migrate')
        time.sleep(2.0)
        pinger.finish()
        expected = 'failed' if fails else 'completed'
        if status != expected:
            raise RuntimeError('migration %s: %s' % (status, src.output()
                                                     + dst.output()))
        runs = src if fails else dst
        if mode == 'local-mq-fail':
            # the guest's two queues, then a reset of the destination,
            # which would disable the second if it still had the fds
            dst.wait_for(lambda: dst.migration_status() == 'failed',
                         'failed load', timeout=30)
            attached = [tap_attached_queues('tap2')]
            dst.cmd('system_reset')
            time.sleep(1.0)
            attached.append(tap_attached_queues('tap2'))
        dst_status = runs.cmd('query-status')['status']
        sent, lost, gap = pinger.stats(t0 - 1.0, t1 + 1.0)
        after = answers(GUEST)
        r = {'mode': mode, 'downtime_ms': info.get('downtime'),
             'total_ms': info.get('total-time'), 'sent': sent,
             'lost': lost, 'lost_ms': lost * pinger.interval * 1e3,
             'gap_ms': gap * 1e3, 'dst_status': dst_status,
             'answers_after': after, 'queues': queues,
             'tap': 'tap2' if mq else 'tap0'}
        if mode == 'local-vhost':
            # the source's vhost-net cannot reach the tap device again
            src.cmd('cont')
            r['answers_after_cont'] = answers(GUEST)
        if mode == 'vhost-fail':
            # the source hears only that the destination failed
            dst.shutdown()
            r['error'] = dst.output().strip()
            r['detail'] = "its vhost-net started again"
        if mode == 'local-mq-fail':
            r['error'] = dst.cmd('query-migrate').get('error-desc', '')
            r['detail'] = ('tap2 has %d then %d queues attached, before and '
                           'after a reset of the destination, which stays '
                           '(exit-on-error=false)' % tuple(attached))
            if attached != [2, 2]:
                r['problems'] = ['the failed destination reached the '
                                 'source\'s tap device: ' + r['detail']]
    finally:
        src.cleanup()
        dst.cleanup()
    # the devices log their packets when QEMU stops vhost-net at its exit
    r.setdefault('problems', [])
    if vhost:
        r['problems'] += check_vhost(r, shim, logs[0], logs[1], dst_before,
                                     dst_held)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--reps', type=int, default=1)
    ap.add_argument('--slack-ms', type=float, default=1500.0)
    ap.add_argument('--json')
    ap.add_argument('--modes', default=','.join(MODES),
                    help='comma-separated, of %s (default: all)'
                    % ', '.join(MODES))
    ap.add_argument('--in-netns', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args()
    tap = TAP()
    what = 'local migration with a guest'
    if not args.in_netns:
        why = netns_unavailable()
        if why:
            tap.skip(what, why)
            return tap.done()
        try:
            guestlib.guest_files()
        except guestlib.GuestUnavailable as e:
            tap.skip(what, str(e))
            return tap.done()
        argv = [os.path.abspath(__file__), '--in-netns',
                '--qemu', args.qemu, '--reps', str(args.reps),
                '--slack-ms', str(args.slack_ms), '--modes', args.modes]
        if args.json:
            argv += ['--json', os.path.abspath(args.json)]
        exec_in_netns(argv)
    kernel, initrd = guestlib.guest_files()
    guest_args = guestlib.guest_args(kernel, initrd)
    sh('ip link set lo up; ip link add br0 type bridge; '
       'ip link set br0 type bridge forward_delay 0; '
       'ip addr add 10.0.0.1/24 dev br0; ip link set br0 up; '
       'ip tuntap add dev tap2 mode tap multi_queue; '
       'for t in tap0 tap1; do ip tuntap add dev $t mode tap; done; '
       'for t in tap0 tap1 tap2; do ip link set $t master br0; '
       'ip link set $t up; done')
    results = []
    tmp = tempfile.mkdtemp(prefix='local-tap-guest-')
    for rep in range(args.reps):
        for mode in args.modes.split(','):
            name = '%s migration %d' % (mode, rep + 1)
            try:
                r = run(os.path.abspath(args.qemu), mode, tmp, guest_args)
            except (QMPError, RuntimeError, TimeoutError, OSError) as e:
                tap.ok(False, '%s: %r' % (name, e))
                continue
            results.append(r)
            limit = (r['downtime_ms'] or 0) + args.slack_ms
            if r['mode'] in FAILS:
                tap.ok(r['dst_status'] == 'running' and r['answers_after']
                       and FAILS[r['mode']] in r['error'] and
                       not r['problems'],
                       '%s: the destination fails, the source runs on, %d '
                       'of %d pings lost, longest gap %.0f ms; %s: %s'
                       % (name, r['lost'], r['sent'], r['gap_ms'],
                          r['detail'], r['error']), repr(r))
                continue
            vhost = (', vhost (%s): destination rx %s tx %s'
                     % (r['vhost'], r.get('dst_rx', '-'), r.get('dst_tx', '-'))
                     if 'vhost' in r else '')
            tap.ok(r['dst_status'] == 'running' and r['answers_after'] and
                   r['gap_ms'] <= limit and not r['problems'],
                   '%s: %d of %d pings lost, longest gap %.0f ms, downtime '
                   '%s ms, total %s ms (gap limit %.0f ms)%s'
                   % (name, r['lost'], r['sent'], r['gap_ms'],
                      r['downtime_ms'], r['total_ms'], limit, vhost),
                   repr(r))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    if tap.failed:
        print('# QEMU and vhost logs kept in %s' % tmp, flush=True)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())
