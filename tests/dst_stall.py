#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A destination whose source stalls, over real sockets.

A real migration stream is recorded first: a paused q35 guest with a
virtio-net NIC and 256 MiB of RAM migrates to a file.  The test then
plays the source itself: it connects to a destination started with
-incoming unix:, sends a prefix of that stream, and stops sending
(the connection stays open, as with a paused source process or a
network partition).  Stall points:

- header: the first 4 bytes (the stream magic);
- RAM: half of the stream, in the middle of the RAM;
- device: inside the virtio-net section of the device state;
- bitmap: inside the dirty-bitmap section of a second stream, with a
  block dirty bitmap and the dirty-bitmaps capability (the load holds
  the lock of the bitmaps' load there, which QEMU quitting takes).

At each point the destination must answer query-status (QMP) and
"info status" (HMP) within 100 ms, and end within 5 s on SIGTERM (run
1) and on quit (run 2).  With --stock, the stock binary is run the
same way in the same run, and its figures are printed beside (stock
answers in about a millisecond and exits; it is not asserted).

multifd: a real source with multifd migrates through a proxy that
stops forwarding one channel, right after its handshake (the sync that
ends the RAM setup section, which loads with the BQL) or 4 MiB in (a
sync of the RAM rounds).  The load thread of the destination waits in
the multifd sync (the trace event multifd_recv_sync_main_wait says it
got there; in a few runs the source blocks on the stalled channel
before it sends the sync, and the load waits on the main channel
instead: most runs must be in the sync); in every run the destination
must answer QMP within 100 ms, and quit must end it within 5 s.  With the channel closed cleanly by the proxy
instead (a source that cancelled), the destination must fail the
migration by itself within 5 s.

usage: dst_stall.py --qemu BINARY [--stock BINARY] [--reps N]
"""

import argparse
import contextlib
import os
import queue
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_vm import VM, TAP, QMPError  # noqa: E402

MIB = 1024 * 1024
RAM_MIB = 256
LATENCY_LIMIT = 0.100
EXIT_LIMIT = 5.0


def vm_args(extra=()):
    return ['-S', '-object',
            'memory-backend-ram,id=mem0,size=%dM' % RAM_MIB,
            '-netdev', 'hubport,id=n0,hubid=0',
            '-device', 'virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56'] + \
        list(extra)


def new_vm(qemu, name, extra=(), tmpdir=None):
    v = VM(qemu, name=name, tmpdir=tmpdir,
           machine='q35,memory-backend=mem0', args=vm_args(extra))
    v.args[v.args.index('64M')] = '%dM' % RAM_MIB
    return v


# a block node with a dirty bitmap, whose state migrates with the
# dirty-bitmaps capability
BITMAP_ARGS = ['-blockdev', 'null-co,node-name=disk0,size=67108864']
BITMAP_CAPS = [{'capability': 'dirty-bitmaps', 'state': True}]


def record_stream(qemu, bitmap=False):
    """Migrate a paused guest to a file; return the stream's bytes."""
    src = new_vm(qemu, 'record', BITMAP_ARGS if bitmap else ())
    try:
        src.start()
        if bitmap:
            src.cmd('block-dirty-bitmap-add', {'node': 'disk0', 'name': 'bm0'})
            src.cmd('migrate-set-capabilities', capabilities=BITMAP_CAPS)
        path = os.path.join(src.tmpdir, 'stream')
        src.cmd('migrate', uri='file:' + path)
        st = src.wait_migration_end(timeout=120)
        if st != 'completed':
            raise RuntimeError('recording the stream: %s' % st)
        with open(path, 'rb') as f:
            return f.read()
    finally:
        src.cleanup()


def random_source(qemu, name, tmpdir, random_mib=32):
    """A source whose first @random_mib MiB of RAM are random bytes (the
    rest zero), so that its migration takes some time."""
    path = os.path.join(tmpdir, name + '.ram')
    with open(path, 'wb') as f:
        for _ in range(random_mib):
            f.write(os.urandom(MIB))
        f.truncate(RAM_MIB * MIB)
    src = new_vm(qemu, name, tmpdir=tmpdir)
    i = src.args.index('memory-backend-ram,id=mem0,size=%dM' % RAM_MIB)
    src.args[i] = ('memory-backend-file,id=mem0,size=%dM,mem-path=%s,'
                   'share=off' % (RAM_MIB, path))
    return src


def bitmap_point(stream):
    """A point inside the data of the dirty-bitmap START section: type
    1, section id, the ID string, instance and version, then the
    bitmap's header, which the load reads with its lock held."""
    m = re.search(rb'\x01....\x0cdirty-bitmap', stream, re.DOTALL)
    if not m:
        raise RuntimeError('no dirty-bitmap section in the stream')
    return m.end() + 8 + 2


def stall_points(stream):
    """(name, number of bytes sent) for each point of the stream."""
    # the FULL section header of virtio-net: type 4, section id (4
    # bytes), the length of the ID string and the string, then instance
    # and version (4 bytes each); stop some way into the section's data
    m = None
    for m in re.finditer(rb'\x04....(.)([^\x00]{1,255}?/virtio-net)\x00',
                         stream, re.DOTALL):
        if m.group(1)[0] == len(m.group(2)):
            break
    else:
        raise RuntimeError('no virtio-net section in the stream')
    dev = m.end(2) + 8 + 64
    return [('header', 4), ('RAM', len(stream) // 2), ('device', dev)]


def worst_latency(fn, n):
    """The longest of @n calls of @fn, or infinity if one timed out
    (the connection is out of step then: stop there)."""
    worst = 0.0
    for _ in range(n):
        t0 = time.monotonic()
        try:
            fn()
        except (TimeoutError, socket.timeout):
            return float('inf')
        worst = max(worst, time.monotonic() - t0)
    return worst


@contextlib.contextmanager
def stalled_dst(qemu, stream, sent, name='stall-dst', extra=(), caps=None):
    """A destination (-incoming defer, then migrate-incoming unix:) that
    was sent the first @sent bytes of @stream by a source that stalls
    there, the connection left open; @caps are set before.  Killed and
    removed when the block ends."""
    dst = new_vm(qemu, name, ['-incoming', 'defer'] + list(extra))
    conn = None
    try:
        dst.start()
        if caps:
            dst.cmd('migrate-set-capabilities', capabilities=caps)
        sock = os.path.join(dst.tmpdir, 'mig.sock')
        dst.cmd('migrate-incoming', uri='unix:' + sock)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(sock)
        conn.sendall(stream[:sent])
        # let the load reach the end of what it was given
        time.sleep(0.5)
        yield dst
    finally:
        if conn:
            conn.close()
        end_all([dst])


def end_all(vms, proxy=None):
    """Kill what still runs of @vms, close @proxy, remove their files
    (in the order of @vms)."""
    for v in vms:
        if v.proc and v.proc.poll() is None:
            v.proc.kill()
            v.proc.wait()
    if proxy:
        proxy.close()
    for v in vms:
        v.cleanup()


def stall_once(qemu, stream, sent, how, bitmap=False):
    """Start a destination, send it @sent bytes and stall; measure.

    Return (worst QMP latency, worst HMP latency, seconds to exit after
    @how or None if it did not, exit status, destination output).
    """
    with stalled_dst(qemu, stream, sent,
                     extra=BITMAP_ARGS if bitmap else (),
                     caps=BITMAP_CAPS if bitmap else None) as dst:
        dst.qmp.sock.settimeout(2.0)
        qmp = worst_latency(lambda: dst.cmd('query-status'), 10)
        hmp = (worst_latency(lambda: dst.hmp('info status'), 5)
               if qmp != float('inf') else float('inf'))
        t0 = time.monotonic()
        if how == 'SIGTERM':
            dst.proc.send_signal(signal.SIGTERM)
        else:
            try:
                dst.qmp.send('quit')
            except OSError:
                pass
        try:
            rc = dst.proc.wait(EXIT_LIMIT)
            took = time.monotonic() - t0
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
            rc, took = None, None
        return qmp, hmp, took, rc, dst.output()


def all_points(streams, which):
    """{name: (stream, bytes sent, bitmap)} for binary @which."""
    points = {n: (streams[which], sent, False)
              for n, sent in stall_points(streams[which])}
    bstream = streams[which + '-bitmap']
    points['bitmap'] = (bstream, bitmap_point(bstream), True)
    return points


def check_stalls(tap, qemu, stock, reps):
    streams = {'series': record_stream(qemu),
               'series-bitmap': record_stream(qemu, bitmap=True)}
    if stock:
        streams['stock'] = record_stream(stock)
        streams['stock-bitmap'] = record_stream(stock, bitmap=True)
    points = all_points(streams, 'series')
    tap.ok(True, 'recorded streams of %d and %d bytes; stall points %s'
           % (len(streams['series']), len(streams['series-bitmap']),
              ', '.join('%s at %d' % (n, p[1]) for n, p in points.items())))
    for name, (stream, sent, bitmap) in points.items():
        for how in ('SIGTERM', 'quit'):
            worst = [0.0, 0.0, 0.0]
            bad = []
            for rep in range(reps):
                qmp, hmp, took, rc, out = stall_once(
                    qemu, stream, sent, how, bitmap)
                worst = [max(worst[0], qmp), max(worst[1], hmp),
                         max(worst[2], took if took is not None else 1e9)]
                if qmp > LATENCY_LIMIT or hmp > LATENCY_LIMIT or \
                        took is None:
                    bad.append('rep %d: QMP %.1f ms, HMP %.1f ms, %s'
                               % (rep, qmp * 1e3, hmp * 1e3,
                                  'no exit within %.0f s' % EXIT_LIMIT
                                  if took is None else
                                  'exit %d after %.2f s' % (rc, took)))
                    bad.append(out[-500:])
            line = ('stall in %s, %s: QMP %.1f ms, HMP %.1f ms, %s '
                    '(worst of %d)'
                    % (name, how, worst[0] * 1e3, worst[1] * 1e3,
                       'no exit within %.0f s' % EXIT_LIMIT
                       if worst[2] >= 1e9 else
                       'exit after %.2f s' % worst[2], reps))
            if stock:
                s_stream, s_sent, _ = all_points(streams, 'stock')[name]
                qmp, hmp, took, rc, out = stall_once(
                    stock, s_stream, s_sent, how, bitmap)
                line += '; stock: QMP %.1f ms, HMP %.1f ms, %s' % (
                    qmp * 1e3, hmp * 1e3,
                    'no exit within %.0f s' % EXIT_LIMIT if took is None
                    else 'exit after %.2f s' % took)
            tap.ok(not bad, line, '\n'.join(bad))


class StallingProxy:
    """Forward the migration connections from @listen to @target; once
    the first multifd channel has forwarded @after bytes, forward
    nothing more of it (keep reading it, so that the source goes on).
    With @end_stalled, the stalled channel is closed cleanly instead
    (its end passed on, as for a source that cancelled).  With
    @only_first, connections after the first are accepted but never
    forwarded (the postcopy preempt channel never comes)."""

    MULTIFD_MAGIC = b'\x11\x22\x33\x44'
    SHUT = object()

    def __init__(self, listen, target, after=None, only_first=False,
                 end_stalled=False):
        self.target = target
        self.after = after
        self.end_stalled = end_stalled
        self.only_first = only_first
        self.accepted = 0
        self.held = threading.Event()
        self.stalled = threading.Event()
        self.multifd_seen = 0
        self.lock = threading.Lock()
        self.socks = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(listen)
        self.srv.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.accepted += 1
            if self.only_first and self.accepted > 1:
                self.socks.append(c)
                self.held.set()
                threading.Thread(target=self._drain, args=(c,),
                                 daemon=True).start()
                continue
            d = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            d.connect(self.target)
            self.socks += [c, d]
            threading.Thread(target=self._pump, args=(c, d, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(d, c, False),
                             daemon=True).start()

    def _drain(self, c):
        while True:
            try:
                if not c.recv(65536):
                    return
            except OSError:
                return

    def _pump(self, a, b, from_source):
        """Copy a to b.  The writes go through a queue, so that the end
        of a is passed on to b at once, even while b does not read (as
        the kernel does for a UNIX socket whose peer goes away)."""
        stall = False
        sent = 0
        first = True
        q = queue.Queue()

        def writer():
            while True:
                data = q.get()
                if data is None:
                    return
                try:
                    if data is self.SHUT:
                        b.shutdown(socket.SHUT_WR)
                        continue
                    b.sendall(data)
                except OSError:
                    return

        threading.Thread(target=writer, daemon=True).start()
        while True:
            try:
                data = a.recv(65536)
            except OSError:
                data = b''
            if not data:
                break
            if first and from_source:
                first = False
                with self.lock:
                    if data.startswith(self.MULTIFD_MAGIC) and \
                            self.multifd_seen == 0:
                        stall = True
                    if data.startswith(self.MULTIFD_MAGIC):
                        self.multifd_seen += 1
            ended = self.stalled.is_set() and stall
            if stall and self.after is not None and \
                    sent + len(data) > self.after:
                data = data[:max(0, self.after - sent)]
                if data and self.end_stalled and not ended:
                    q.put(data)
                    data = b''
                if self.end_stalled and not ended:
                    q.put(self.SHUT)
                self.stalled.set()
            if data:
                q.put(data)
            sent += len(data)
        q.put(None)
        if stall:
            # a stalled channel stays open: a partition, not an end
            return
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.srv.close()
        for c in self.socks:
            try:
                c.close()
            except OSError:
                pass


def last_sync_event(trace):
    """The last multifd sync event of the destination's trace log."""
    last = ''
    with open(trace) as f:
        for line in f:
            if 'multifd_recv_sync_main' in line:
                last = line
    return last


def check_multifd(tap, qemu, reps):
    for after, where in ((64, 'the RAM setup'), (4 * MIB, 'a RAM round')):
        check_multifd_once(tap, qemu, reps, after, where, False)
    check_multifd_once(tap, qemu, reps, 64, 'the RAM setup', True)


def check_multifd_once(tap, qemu, reps, after, where, end):
    """A multifd channel of the stream stops after @after bytes (a proxy
    withholds its data): the destination's load waits in the multifd
    sync of @where; quit.  With @end, the proxy closes the channel
    instead: the load must fail by itself."""
    bad = []
    in_sync = 0
    worst = 0.0
    for rep in range(reps):
        dst = new_vm(qemu, 'mfd-dst', ['-incoming', 'defer'])
        trace = os.path.join(dst.tmpdir, 'trace.log')
        dst.args += ['-trace', 'multifd_recv_sync_main*', '-D', trace]
        src = random_source(qemu, 'mfd-src', dst.tmpdir)
        proxy = None
        try:
            dst.start()
            src.start()
            caps = [{'capability': 'multifd', 'state': True}]
            for v in (src, dst):
                v.cmd('migrate-set-capabilities', capabilities=caps)
                v.cmd('migrate-set-parameters',
                      **{'multifd-channels': 2})
            sock = os.path.join(dst.tmpdir, 'mig.sock')
            dst.cmd('migrate-incoming', uri='unix:' + sock,
                    **{'exit-on-error': False})
            proxy = StallingProxy(os.path.join(dst.tmpdir, 'proxy.sock'),
                                  sock, after, end_stalled=end)
            src.cmd('migrate', uri='unix:' + os.path.join(dst.tmpdir,
                                                          'proxy.sock'))
            if not proxy.stalled.wait(30):
                raise RuntimeError('the multifd channel never stalled')
            if end:
                t0 = time.monotonic()
                end_t = t0 + EXIT_LIMIT
                st = dst.migration_status()
                while st != 'failed' and time.monotonic() < end_t:
                    time.sleep(0.05)
                    st = dst.migration_status()
                worst = max(worst, time.monotonic() - t0)
                if st != 'failed':
                    bad.append('rep %d: destination still %s %.0f s after '
                               'the channel ended' % (rep, st, EXIT_LIMIT))
                else:
                    in_sync += 1
                continue
            # The source may block on the stalled channel before it sends
            # the sync (its own sync waits for every channel): then the
            # load waits on the main channel, which must end as well
            try:
                dst.wait_for(lambda: 'sync_main_wait' in
                             last_sync_event(trace),
                             'the multifd sync', timeout=10)
                in_sync += 1
            except TimeoutError:
                pass
            time.sleep(0.3)
            dst.qmp.sock.settimeout(2.0)
            lat = worst_latency(lambda: dst.cmd('query-status'), 5)
            if lat > LATENCY_LIMIT:
                bad.append('rep %d: QMP answers after %.1f ms'
                           % (rep, lat * 1e3))
            t0 = time.monotonic()
            try:
                dst.qmp.send('quit')
                rc = dst.proc.wait(EXIT_LIMIT)
                worst = max(worst, time.monotonic() - t0)
                if rc != 0:
                    bad.append('rep %d: status %d' % (rep, rc))
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
                bad.append('rep %d: no exit within %.0f s after quit'
                           % (rep, EXIT_LIMIT))
                bad.append(dst.output()[-500:])
        except (QMPError, RuntimeError, TimeoutError, OSError) as e:
            bad.append('rep %d: %r' % (rep, e))
            bad.append('destination: ' + dst.output()[-500:])
            bad.append('source: ' + src.output()[-500:])
        finally:
            end_all([src, dst], proxy)
    if end:
        tap.ok(not bad and in_sync == reps,
               'a multifd channel closed cleanly in %s: the load failed '
               'after %.2f s at worst' % (where, worst), '\n'.join(bad))
        return
    # Most runs must have been in the sync, all must have quit
    tap.ok(not bad and 2 * in_sync > reps,
           'quit while the load waits in the multifd sync of %s (%d of %d '
           'runs were in it): exit after %.2f s at worst'
           % (where, in_sync, reps, worst), '\n'.join(bad))


def check_preempt_wait(tap, qemu, reps):
    """Postcopy with preempt, the preempt channel held back by a proxy:
    the destination's load waits for it before the device state.  yank
    on the destination, and the source killed, must end the load
    (failed); quit must end QEMU."""
    for how in ('yank', 'source killed', 'quit'):
        bad = []
        worst = 0.0
        for rep in range(reps):
            dst = new_vm(qemu, 'pre-dst', ['-incoming', 'defer'])
            src = random_source(qemu, 'pre-src', dst.tmpdir)
            proxy = None
            try:
                dst.start()
                src.start()
                caps = [{'capability': c, 'state': True}
                        for c in ('postcopy-ram', 'postcopy-preempt')]
                for v in (src, dst):
                    v.cmd('migrate-set-capabilities', capabilities=caps)
                sock = os.path.join(dst.tmpdir, 'mig.sock')
                dst.cmd('migrate-incoming', uri='unix:' + sock,
                        **{'exit-on-error': False})
                psock = os.path.join(dst.tmpdir, 'proxy.sock')
                proxy = StallingProxy(psock, sock, only_first=True)
                src.cmd('migrate-set-parameters',
                        **{'max-bandwidth': 32 * MIB})
                src.cmd('migrate', uri='unix:' + psock)
                src.wait_for(lambda: src.migration_status() == 'active',
                             'active', timeout=30)
                src.cmd('migrate-start-postcopy')
                if not proxy.held.wait(30):
                    raise RuntimeError('no preempt channel was opened')
                # let the destination reach the wait
                time.sleep(1.0)
                dst.qmp.sock.settimeout(2.0)
                lat = worst_latency(lambda: dst.cmd('query-status'), 5)
                if lat > LATENCY_LIMIT:
                    bad.append('rep %d: QMP answers after %.1f ms'
                               % (rep, lat * 1e3))
                dst.qmp.sock.settimeout(60.0)
                t0 = time.monotonic()
                if how == 'quit':
                    try:
                        dst.qmp.send('quit')
                        dst.proc.wait(EXIT_LIMIT)
                        worst = max(worst, time.monotonic() - t0)
                    except Exception:  # noqa: BLE001 - TimeoutExpired
                        bad.append('rep %d: no exit within %.0f s after '
                                   'quit' % (rep, EXIT_LIMIT))
                    continue
                if how == 'yank':
                    dst.cmd('yank', instances=[{'type': 'migration'}])
                else:
                    src.proc.kill()
                    src.proc.wait()
                end = time.monotonic() + EXIT_LIMIT
                st = dst.migration_status()
                while st not in ('failed', 'completed') and \
                        time.monotonic() < end:
                    time.sleep(0.05)
                    st = dst.migration_status()
                worst = max(worst, time.monotonic() - t0)
                if st != 'failed':
                    bad.append('rep %d: destination still %s %.0f s after '
                               '%s' % (rep, st, EXIT_LIMIT, how))
                err = dst.cmd('query-migrate').get('error-desc', '')
                if 'preempt channel' not in err:
                    bad.append('rep %d: error %r' % (rep, err))
            except (QMPError, RuntimeError, TimeoutError, OSError) as e:
                bad.append('rep %d: %r' % (rep, e))
                bad.append(dst.output()[-500:])
            finally:
                end_all([src, dst], proxy)
        tap.ok(not bad, '%s while the load waits for the postcopy preempt '
               'channel: %s after %.2f s at worst'
               % (how, 'exit' if how == 'quit' else 'failed', worst),
               '\n'.join(bad))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--stock')
    ap.add_argument('--reps', type=int, default=1)
    args = ap.parse_args()
    tap = TAP()
    check_stalls(tap, args.qemu, args.stock, args.reps)
    check_multifd(tap, args.qemu, args.reps)
    check_preempt_wait(tap, args.qemu, args.reps)
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())
