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
  self-announce moves the guest's MAC to the new port).

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
                     netns_unavailable)

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


def run(qemu, mode, tmp, guest_args):
    """One migration of the guest, @mode 'local' or 'plain'; the
    figures, or raises"""
    sock = os.path.join(tmp, mode + '.sock')
    serial = os.path.join(tmp, mode + '-src.serial')
    port = ['-device', 'pcie-root-port,id=rp0,chassis=1']
    mq = mode == 'local-mq'
    nic = port + ['-device', 'virtio-net-pci,netdev=n0,bus=rp0,'
                  'mac=52:54:00:12:34:56%s' % (',mq=on' if mq else '')]
    src_tap = 'tap,id=n0,ifname=tap0,script=no,downscript=no'
    if mq:
        guest_args = guest_args + ['-smp', '2']
        src_tap = 'tap,id=n0,ifname=tap2,script=no,downscript=no,queues=2'
    if mode in ('local', 'local-mq'):
        src_tap += ',%s=on' % LOCAL
        dst_args = ['-incoming', 'config:local=on', '-incoming',
                    'unix:' + sock, '-netdev', 'tap,id=n0,%s=on%s'
                    % (LOCAL, ',queues=2' if mq else '')]
    elif mode == 'local-defer':
        src_tap += ',%s=on' % LOCAL
        dst_args = ['-incoming', 'defer']
    else:
        dst_args = ['-incoming', 'unix:' + sock, '-netdev',
                    'tap,id=n0,ifname=tap1,script=no,downscript=no']
    src = VM(qemu, guest_args + ['-serial', 'file:' + serial, '-netdev',
                                 src_tap] + nic, name=mode + '-src',
             tmpdir=tmp)
    dst = VM(qemu, guest_args + ['-serial', 'null'] + dst_args +
             (port if mode == 'local-defer' else nic),
             name=mode + '-dst', tmpdir=tmp)
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
        if mode == 'local-defer':
            dst.cmd('migrate-set-parameters', local=True)
            dst.cmd('netdev_add', type='tap', id='n0', **{LOCAL: True})
            dst.cmd('device_add', driver='virtio-net-pci', netdev='n0',
                    bus='rp0', mac='52:54:00:12:34:56')
            dst.cmd('migrate-incoming', uri='unix:' + sock)
        src.cmd('migrate-set-capabilities', capabilities=[
            {'capability': 'return-path', 'state': True}])
        if mode != 'plain':
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
        if status != 'completed':
            raise RuntimeError('migration %s: %s' % (status, src.output()
                                                     + dst.output()))
        dst_status = dst.cmd('query-status')['status']
        sent, lost, gap = pinger.stats(t0 - 1.0, t1 + 1.0)
        after = answers(GUEST)
        return {'mode': mode, 'downtime_ms': info.get('downtime'),
                'total_ms': info.get('total-time'), 'sent': sent,
                'lost': lost, 'lost_ms': lost * pinger.interval * 1e3,
                'gap_ms': gap * 1e3, 'dst_status': dst_status,
                'answers_after': after, 'queues': queues}
    finally:
        src.cleanup()
        dst.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--reps', type=int, default=1)
    ap.add_argument('--slack-ms', type=float, default=1500.0)
    ap.add_argument('--json')
    ap.add_argument('--modes', default='local,local-defer,plain,local-mq',
                    help='comma-separated, of local, local-defer, plain '
                    'and local-mq (default: all)')
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
            tap.ok(r['dst_status'] == 'running' and r['answers_after'] and
                   r['gap_ms'] <= limit,
                   '%s: %d of %d pings lost, longest gap %.0f ms, downtime '
                   '%s ms, total %s ms (gap limit %.0f ms)'
                   % (name, r['lost'], r['sent'], r['gap_ms'],
                      r['downtime_ms'], r['total_ms'], limit), repr(r))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())
