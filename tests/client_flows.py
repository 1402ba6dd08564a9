#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""What existing clients do on a destination, over real QMP sockets.

A destination started with -incoming <uri> only listens until a source
connects, and clients set options in that window (see params.md §4):

- proxmox: a target started with -incoming unix: and -S gets every
  capability it lists, in one migrate-set-capabilities, first with the
  values it shows and then with the states Proxmox VE's
  set_migration_caps() sends (auto-converge, xbzrle and dirty-bitmaps
  on, everything else off), then events on and migrate-set-parameters;
  a running guest migrates to it, the target reports completed (and a
  MIGRATION event), runs after cont and has the guest's RAM;
- colo: a secondary started with -incoming tcp: takes x-colo (skipped
  when QEMU was built without replication), nbd-server-start and
  nbd-server-add as in docs/COLO-FT.txt;
- listening: on -incoming unix: and tcp:, capabilities and parameters
  over QMP and HMP are accepted; enabling multifd is still refused
  with an error that names it and does not claim a migration is in
  progress; series only: mapped-ram is refused naming the capability
  and the transport;
- connected: once a (throttled) source has connected, capability
  changes and non-runtime parameters are refused naming them, runtime
  parameters and unchanged values are accepted (series only).

The pass/fail is about --qemu; with --stock the same checks run on
stock 10.2.2 and are reported as comments ('# stock: ...'), as what
upstream users get today.

usage: client_flows.py --qemu BINARY [--stock BINARY]
"""

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_vm  # noqa: E402
from qemu_vm import TAP, QMPError  # noqa: E402

MIB = 1024 * 1024
PATTERN_ADDR = 0x2000000      # 32 MiB, untouched by SeaBIOS
PATTERN_SIZE = 64 * 1024

# Proxmox VE's set_migration_caps() (PVE::QemuServer): every capability
# that query-migrate-capabilities lists, on if it is in this table
# (dirty-bitmaps when its QEMU supports PBS bitmap migration), else off.
PROXMOX_ON = ('auto-converge', 'xbzrle', 'dirty-bitmaps')

LIVE = set()
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG


class VM(qemu_vm.VM):
    """A VM that dies with this script and is cleaned up at its end."""

    def launch(self):
        self.log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        LIVE.add(self)

    def cleanup(self):
        try:
            super().cleanup()
        finally:
            LIVE.discard(self)


def kill_all():
    for v in list(LIVE):
        if v.proc is not None and v.proc.poll() is None:
            v.proc.kill()
        v.cleanup()


class Report:
    """TAP for the series; '# stock:' comments for stock."""

    def __init__(self, tap, stock):
        self.tap = tap
        self.stock = stock
        self.label = 'stock' if stock else 'series'

    def ok(self, cond, name, diag=None):
        if not self.stock:
            return self.tap.ok(cond, name, diag)
        print('# stock: %s - %s' % ('ok' if cond else 'NOT OK', name),
              flush=True)
        if not cond and diag:
            for line in str(diag).splitlines():
                print('# stock:     ' + line, flush=True)
        return cond

    def skip(self, name, why):
        if not self.stock:
            return self.tap.skip(name, why)
        print('# stock: skip - %s: %s' % (name, why), flush=True)

    def info(self, msg):
        print('# %s: %s' % (self.label, msg), flush=True)


class session:
    """with session(rep, what, vms...): an exception is a failed check
    with the VMs' output; the VMs are cleaned up after."""

    def __init__(self, rep, what, *vms):
        self.rep, self.what, self.vms = rep, what, vms

    def __enter__(self):
        return self

    def __exit__(self, typ, e, tb):
        try:
            if typ is not None and issubclass(
                    typ, (QMPError, RuntimeError, TimeoutError, OSError,
                          EOFError, KeyError)):
                self.rep.ok(False, '%s: unexpected exception: %r'
                            % (self.what, e),
                            ''.join(v.output()[-3000:] for v in self.vms))
                return True
            return False
        finally:
            for v in self.vms:
                v.cleanup()


def error_of(vm, cmd, args=None):
    """Run a QMP command; return its error text, or None if it worked."""
    try:
        vm.cmd(cmd, args or {})
    except QMPError as e:
        return e.desc
    return None


def set_caps(vm, caps):
    """migrate-set-capabilities with a {name: state} dict (in order)."""
    return error_of(vm, 'migrate-set-capabilities',
                    {'capabilities': [{'capability': c, 'state': s}
                                      for c, s in caps.items()]})


def caps_of(vm):
    return {c['capability']: c['state']
            for c in vm.cmd('query-migrate-capabilities')}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def postcopy_unsupported(err):
    return err and err.startswith('Postcopy is not supported')


# 1. Proxmox VE

def check_proxmox(rep, qemu):
    src = VM(qemu, name='pve-src')
    pattern = os.urandom(PATTERN_SIZE)
    pattern_file = os.path.join(src.tmpdir, 'pattern.bin')
    with open(pattern_file, 'wb') as f:
        f.write(pattern)
    src.args += ['-device', 'loader,addr=%#x,file=%s' % (PATTERN_ADDR,
                                                        pattern_file)]
    sock = os.path.join(src.tmpdir, 'pve.sock')
    dst = VM(qemu, name='pve-dst', tmpdir=src.tmpdir,
             args=['-S', '-incoming', 'unix:' + sock])
    with session(rep, 'proxmox', dst, src):
        src.start()
        dst.start()
        caps = caps_of(dst)
        err = set_caps(dst, caps)
        rep.ok(err is None, 'proxmox: every capability (%d) with the value '
               'it shows is accepted' % len(caps), err)
        pve = {c: c in PROXMOX_ON for c in caps}
        err = set_caps(dst, pve)
        rep.ok(err is None, 'proxmox: set_migration_caps (%s on, the rest '
               'off) is accepted' % ', '.join(PROXMOX_ON), err)
        if err:
            rep.info('proxmox: set_migration_caps refused: ' + err)
        err = set_caps(dst, {'events': True})
        rep.ok(err is None, 'proxmox: events on is accepted', err)
        want = dict(pve, events=True)
        got = caps_of(dst)
        rep.ok(got == want, 'proxmox: the target shows those capabilities',
               {c: s for c, s in got.items() if want.get(c) != s})
        params = {'downtime-limit': 100, 'max-bandwidth': 512 * MIB,
                  'xbzrle-cache-size': 32 * MIB}
        err = error_of(dst, 'migrate-set-parameters', params)
        rep.ok(err is None, 'proxmox: migrate-set-parameters on the target '
               'is accepted', err)
        p = dst.cmd('query-migrate-parameters')
        rep.ok(all(p[k] == v for k, v in params.items()),
               'proxmox: the target shows those parameters',
               {k: p[k] for k in params})

        # the source, as Proxmox sets it up
        src.cmd('migrate-set-capabilities',
                {'capabilities': [{'capability': c, 'state': c in PROXMOX_ON}
                                  for c in caps_of(src)]})
        src.cmd('migrate-set-parameters', params)
        st = dst.cmd('query-status')['status']
        rep.ok(st == 'inmigrate', 'proxmox: target waits in inmigrate', st)
        src.cmd('migrate', uri='unix:' + sock)
        st = dst.wait_migration_end(timeout=90)
        rep.ok(st == 'completed', 'proxmox: the target completes', st)
        st = src.wait_migration_end(timeout=30)
        rep.ok(st == 'completed', 'proxmox: the source completes', st)
        dst.cmd('query-status')             # collect pending events
        seen = [e['data']['status'] for e in dst.qmp.events
                if e['event'] == 'MIGRATION']
        rep.ok('completed' in seen, 'proxmox: the target sent MIGRATION '
               'events', seen)
        st = dst.cmd('query-status')['status']
        rep.ok(st == 'paused', 'proxmox: target paused (-S) before cont', st)
        dst.cmd('cont')
        st = dst.cmd('query-status')['status']
        rep.ok(st == 'running', 'proxmox: target runs after cont', st)
        out = os.path.join(dst.tmpdir, 'dst-ram.bin')
        dst.cmd('pmemsave', val=PATTERN_ADDR, size=PATTERN_SIZE,
                filename=out)
        with open(out, 'rb') as f:
            rep.ok(f.read() == pattern, 'proxmox: guest RAM arrived')
        rep.ok(dst.shutdown() == 0, 'proxmox: target quits cleanly',
               dst.output())


# 2. COLO secondary (docs/COLO-FT.txt)

def check_colo(rep, qemu):
    port = free_port()
    dst = VM(qemu, name='colo-secondary', machine='none',
             args=['-blockdev', 'driver=null-co,node-name=parent0,'
                   'size=%d' % (64 * MIB),
                   '-incoming', 'tcp:127.0.0.1:%d' % port])
    with session(rep, 'colo', dst):
        dst.start()
        err = set_caps(dst, {'x-colo': True})
        if err and 'without replication' in err:
            rep.skip('colo: x-colo on the secondary',
                     'QEMU built without CONFIG_REPLICATION: ' + err)
        else:
            rep.ok(err is None, 'colo: x-colo on a secondary listening on '
                   'tcp: is accepted', err)
            if err:
                rep.info('colo: x-colo refused: ' + err)
            rep.ok(caps_of(dst)['x-colo'] is True,
                   'colo: query-migrate-capabilities shows it')
        nbd = free_port()
        dst.cmd('nbd-server-start', addr={'type': 'inet',
                                          'data': {'host': '127.0.0.1',
                                                   'port': str(nbd)}})
        dst.cmd('nbd-server-add', device='parent0', writable=True)
        err = error_of(dst, 'migrate-set-parameters',
                       {'x-checkpoint-delay': 2000})
        rep.ok(err is None, 'colo: nbd-server-start, nbd-server-add and '
               'x-checkpoint-delay on the secondary', err)
        dst.cmd('nbd-server-stop')
        st = dst.cmd('query-status')['status']
        rep.ok(st == 'inmigrate', 'colo: secondary still waits', st)


# 3. Options on a listening destination

LISTEN_CAPS = ['events', 'dirty-bitmaps', 'xbzrle', 'auto-converge',
               'return-path', 'switchover-ack', 'validate-uuid',
               'late-block-activate', 'pause-before-switchover',
               'postcopy-ram']
LISTEN_PARAMS = {'downtime-limit': 500, 'max-bandwidth': 64 * MIB,
                 'xbzrle-cache-size': 16 * MIB, 'multifd-channels': 4,
                 'x-checkpoint-delay': 1000, 'announce-rounds': 7}
HMP_CAPS = [('events', False), ('xbzrle', False), ('auto-converge', False),
            ('pause-before-switchover', False), ('dirty-bitmaps', True)]
HMP_PARAMS = [('downtime-limit', '700', 700),
              ('max-bandwidth', '20M', 20 * MIB),
              ('multifd-channels', '3', 3),
              ('x-checkpoint-delay', '1500', 1500)]


def listener(qemu, transport, tmpdir=None, name='listen'):
    if transport == 'unix':
        v = VM(qemu, name='%s-unix' % name, machine='none', tmpdir=tmpdir)
        uri = 'unix:' + os.path.join(v.tmpdir, name + '.sock')
    else:
        v = VM(qemu, name='%s-tcp' % name, machine='none', tmpdir=tmpdir)
        uri = 'tcp:127.0.0.1:%d' % free_port()
    v.args += ['-incoming', uri]
    return v


def check_listening(rep, qemu, transport):
    t = 'listening %s' % transport
    dst = listener(qemu, transport)
    with session(rep, t, dst):
        dst.start()

        # refusals stock makes, checked first on a fresh destination
        err = set_caps(dst, {'multifd': True})
        rep.ok(err is not None and 'multifd' in err.lower() and
               'in progress' not in err,
               '%s: multifd is refused, naming it, not "in progress"' % t,
               err)
        rep.info('%s: multifd on: %s' % (t, err or 'accepted'))
        out = dst.hmp('migrate_set_capability multifd on')
        rep.ok('multifd' in out.lower() and 'in progress' not in out,
               '%s: HMP multifd on is refused, naming it' % t, out)
        rep.ok(caps_of(dst)['multifd'] is False,
               '%s: multifd stays off' % t)

        err = set_caps(dst, {'mapped-ram': True})
        rep.info('%s: mapped-ram on: %s' % (t, err or 'accepted'))
        names = ('unix',) if transport == 'unix' else ('tcp', 'inet',
                                                      'socket')
        if not rep.stock:
            rep.ok(err is not None and 'mapped-ram' in err and
                   any(n in err for n in names) and 'in progress' not in err,
                   '%s: mapped-ram is refused, naming it and the transport '
                   '(series only)' % t, err)
        if err is None:
            set_caps(dst, {'mapped-ram': False})

        # what stock accepts
        errs = {}
        for c in LISTEN_CAPS:
            err = set_caps(dst, {c: True})
            if c == 'postcopy-ram' and postcopy_unsupported(err):
                rep.info('%s: postcopy-ram not checked: %s' % (t, err))
                continue
            if err:
                errs[c] = err
        rep.ok(not errs, '%s: QMP capabilities accepted one by one' % t,
               '\n'.join('%s: %s' % kv for kv in errs.items()))
        for c, e in errs.items():
            rep.info('%s: %s refused: %s' % (t, c, e))
        caps = caps_of(dst)
        off = [c for c in LISTEN_CAPS if c not in errs and not caps[c] and
               c != 'postcopy-ram']
        rep.ok(not off, '%s: query-migrate-capabilities shows them' % t, off)
        err = set_caps(dst, caps)
        rep.ok(err is None, '%s: all %d capabilities at their values in one '
               'call' % (t, len(caps)), err)

        err = error_of(dst, 'migrate-set-parameters', LISTEN_PARAMS)
        rep.ok(err is None, '%s: QMP parameters (%s) accepted'
               % (t, ', '.join(LISTEN_PARAMS)), err)
        p = dst.cmd('query-migrate-parameters')
        rep.ok(err is not None or
               all(p[k] == v for k, v in LISTEN_PARAMS.items()),
               '%s: query-migrate-parameters shows them' % t,
               {k: p[k] for k in LISTEN_PARAMS})
        err = error_of(dst, 'migrate-set-parameters', {'tls-creds': 'tls0'})
        rep.info('%s: tls-creds=tls0: %s' % (t, err or 'accepted'))

        bad = []
        for c, on in HMP_CAPS:
            out = dst.hmp('migrate_set_capability %s %s'
                          % (c, 'on' if on else 'off'))
            if out or caps_of(dst)[c] is not on:
                bad.append('%s: %r' % (c, out))
        rep.ok(not bad, '%s: HMP migrate_set_capability accepted' % t,
               '\n'.join(bad))
        for b in bad:
            rep.info('%s: HMP capability: %s' % (t, b))
        bad = []
        for k, text, v in HMP_PARAMS:
            out = dst.hmp('migrate_set_parameter %s %s' % (k, text))
            got = dst.cmd('query-migrate-parameters')[k]
            if out or got != v:
                bad.append('%s %s: %r, shows %r' % (k, text, out, got))
        rep.ok(not bad, '%s: HMP migrate_set_parameter accepted' % t,
               '\n'.join(bad))
        for b in bad:
            rep.info('%s: HMP parameter: %s' % (t, b))
        st = dst.cmd('query-migrate').get('status')
        rep.ok(st in (None, 'none', 'setup'),
               '%s: no migration started meanwhile' % t, st)
        rep.ok(dst.shutdown() == 0, '%s: quits cleanly' % t, dst.output())


# 4. Once a source has connected

def incoming_end(dst, timeout=30):
    """How the incoming migration of @dst ended: its status, or, as
    -incoming <uri> defaults to exit-on-error, 'exited with N'."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dst.proc.poll() is not None:
            return 'exited with %d' % dst.proc.returncode
        try:
            st = dst.migration_status()
        except (OSError, EOFError):
            dst.proc.wait(timeout)
            continue
        if st in ('completed', 'failed', 'cancelled'):
            return st
        time.sleep(0.05)
    return 'timeout'


def check_connected(rep, qemu):
    ram_mib = 64
    src = VM(qemu, name='conn-src', machine='q35,memory-backend=mem0')
    tmp = src.tmpdir
    path = os.path.join(tmp, 'random.ram')
    with open(path, 'wb') as f:
        for _ in range(ram_mib):
            f.write(os.urandom(MIB))
    sock = os.path.join(tmp, 'conn.sock')
    src.args += ['-S', '-object', 'memory-backend-file,id=mem0,size=%dM,'
                 'mem-path=%s,share=off' % (ram_mib, path)]
    dst = VM(qemu, name='conn-dst', tmpdir=tmp,
             machine='q35,memory-backend=mem0',
             args=['-S', '-object', 'memory-backend-ram,id=mem0,size=%dM'
                   % ram_mib, '-incoming', 'unix:' + sock])
    for v in (src, dst):
        v.args[v.args.index('64M')] = '%dM' % ram_mib
    t = 'connected'
    with session(rep, t, dst, src):
        dst.start()
        src.start()
        src.cmd('migrate-set-parameters', **{'max-bandwidth': 4 * MIB})
        src.cmd('migrate', uri='unix:' + sock)
        dst.wait_for(lambda: dst.migration_status() == 'active',
                     'the load to start', timeout=30, interval=0.01)
        t0 = time.monotonic()

        results = []        # (name, error or None, want refused, names)
        for c in ('events', 'dirty-bitmaps'):
            results.append(('capability %s on' % c,
                            set_caps(dst, {c: True}), True, c))
        results.append(('capability events at its value (off)',
                        set_caps(dst, {'events': False}), False, None))
        for k, v in (('multifd-channels', 5), ('tls-creds', 'tls0')):
            results.append(('parameter %s' % k,
                            error_of(dst, 'migrate-set-parameters', {k: v}),
                            True, k))
        results.append(('runtime parameters downtime-limit, max-bandwidth',
                        error_of(dst, 'migrate-set-parameters',
                                 {'downtime-limit': 222,
                                  'max-bandwidth': 33 * MIB}), False, None))
        p = dst.cmd('query-migrate-parameters')
        hmp = [('HMP capability events on',
                'migrate_set_capability events on', True, 'events'),
               ('HMP parameter multifd-channels',
                'migrate_set_parameter multifd-channels 6', True,
                'multifd-channels'),
               ('HMP runtime parameter downtime-limit',
                'migrate_set_parameter downtime-limit 333', False, None)]
        for name, line, refuse, key in hmp:
            out = dst.hmp(line)
            results.append((name, out or None, refuse, key))
        p2 = dst.cmd('query-migrate-parameters')
        caps = caps_of(dst)
        st = dst.migration_status()
        rep.info('%s: checks took %.0f ms, destination status after them: '
                 '%s' % (t, (time.monotonic() - t0) * 1000, st))

        for name, err, refuse, key in results:
            rep.info('%s: %s: %s' % (t, name, err.strip() if err
                                     else 'accepted'))
        src.cmd('migrate_cancel')
        src_end = src.wait_migration_end(timeout=30)
        dst_end = incoming_end(dst)
        rep.info('%s: after migrate_cancel: source %s, destination %s'
                 % (t, src_end, dst_end))
        if rep.stock:
            return
        rep.ok(st == 'active', '%s: the migration was still running' % t, st)
        for name, err, refuse, key in results:
            if refuse:
                rep.ok(err is not None and key in err and
                       ('in progress' in err or 'incoming' in err),
                       '%s: %s refused, naming it' % (t, name), err)
            else:
                rep.ok(err is None, '%s: %s accepted' % (t, name), err)
        rep.ok(p['downtime-limit'] == 222 and p['max-bandwidth'] == 33 * MIB
               and p2['downtime-limit'] == 333 and
               p2['multifd-channels'] == 2 and p2['tls-creds'] == '',
               '%s: runtime values taken, refused ones unchanged' % t,
               {k: p2[k] for k in ('downtime-limit', 'max-bandwidth',
                                   'multifd-channels', 'tls-creds')})
        rep.ok(not caps['events'] and not caps['dirty-bitmaps'],
               '%s: capabilities unchanged' % t)
        rep.ok(src_end == 'cancelled', '%s: the source cancels' % t,
               src_end)
        rep.ok(dst_end in ('failed', 'exited with 1'),
               '%s: the destination\'s load fails' % t, dst_end)


def run_all(rep, qemu):
    check_proxmox(rep, qemu)
    check_colo(rep, qemu)
    check_listening(rep, qemu, 'unix')
    check_listening(rep, qemu, 'tcp')
    check_connected(rep, qemu)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--stock')
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tap = TAP()
    try:
        run_all(Report(tap, False), args.qemu)
        if args.stock:
            print('# stock 10.2.2 (%s), for information:' % args.stock)
            run_all(Report(tap, True), args.stock)
    finally:
        kill_all()
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())
