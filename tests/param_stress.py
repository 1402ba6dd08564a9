#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""migrate-set-parameters hammered during a running migration.

--mode multifd-tls (the default):

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

--mode postcopy-bitmaps: the block-bitmap-mapping list under the
postcopy listen thread.  Each runtime parameter the series accepts
publishes a new copy of all parameters and frees the old one after an
RCU grace period, mapping included; in postcopy the destination's
listen thread loads a dirty-bitmap section for every iteration of the
source, and each load walks the mapping (construct_alias_map()).  In
each of --rounds rounds, a source and a destination with a qcow2 disk
each (node names src-disk and dst-disk) migrate with dirty-bitmaps and
postcopy-ram, a block-bitmap-mapping on both sides (the disk's node,
its bitmaps under other names, and --pad unused nodes to make the
list longer), the destination started with -incoming defer.  The
source has 256 MiB of RAM (4 MiB of it random), four mapped bitmaps
(persistent or not, all dirty or a little, disabled, empty) and one
left out of the mapping; it switches to postcopy at once and is held
to --postcopy-bandwidth.  The source iterates RAM before the bitmaps
and stops at the rate limit, so a bitmap section goes out about when
RAM has nothing left to send: the bits of the two bitmaps the discards
set (9 MiB) make most of the postcopy phase, one section every 100 ms
(the rate-limit period), where random RAM would make the listen
thread load RAM pages and hardly any bitmap section.
While the destination is in postcopy-active, a second QMP client on
each side sends runtime migrate-set-parameters and
query-migrate-parameters as fast as it can until its side's migration
ends.  A round passes when both sides complete, every request
succeeded, the destination has the mapped bitmaps (names, count,
granularity, persistence) and not the other one, and both QEMUs quit
with status 0 and no sanitizer report, runtime error or failed
assertion in their output.  The trace event dirty_bitmap_load_enter
on the destination counts the loads (each walks the mapping) while the
requests ran.  The last line is a summary: "# L: N runs, N failed, ...".

usage: param_stress.py [--mode multifd-tls] [--requests N]
                       [--label L] [--logdir D] BINARY
       param_stress.py --mode postcopy-bitmaps [--rounds N]
                       [--postcopy-bandwidth MIB] [--pad N]
                       [--qemu-img PATH] [--label L] [--logdir D] BINARY
Prints TAP.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

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


def random_ram(path, random_mb=RAM_MB):
    """A file of RAM_MB MiB for memory-backend-file, @random_mb of them
    (spread over it) random bytes, the others zero."""
    with open(path, 'wb') as f:
        f.truncate(RAM_MB << 20)
        for i in range(random_mb):
            f.seek((i * RAM_MB // random_mb) << 20)
            f.write(os.urandom(1 << 20))


def keep_log(args, vm, name=None):
    """Copy @vm's output to --logdir; return the output."""
    out = vm.output()
    if args.logdir:
        os.makedirs(args.logdir, exist_ok=True)
        with open(os.path.join(args.logdir, '%s-%s.log' %
                               (args.label, name or vm.name)), 'w') as f:
            f.write(out)
    return out


def multifd_tls(args, tap):
    src = VM(args.binary, name='src')
    tmp = src.tmpdir
    ram = os.path.join(tmp, 'ram.bin')
    random_ram(ram)
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
            out = keep_log(args, vm)
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


# --mode postcopy-bitmaps

DISK_SIZE = '32G'
RANDOM_MB = 4               # of the RAM; the rest is zero
# (name on the source, alias in the stream, name on the destination,
#  granularity, persistent); 'off' is disabled after the first writes,
# 'empty' is added after all of them
BITMAPS = [
    ('pers', 'a-pers', 'mig-pers', 65536, True),
    ('temp', 'a-temp', 'mig-temp', 512, False),
    ('off', 'a-off', 'mig-off', 4096, True),
    ('empty', 'a-empty', 'mig-empty', 65536, False),
]
UNMAPPED = 'local'          # on the source, not in the mapping
# The discards dirty the whole disk (1G at a time, qemu-io's limit):
# sending the bitmaps they set takes most of the postcopy phase
WRITES_ALL = ['write -P 0x5a 0 1M', 'write -P 0x5a 1G 64k',
              'write -P 0x5a 15G 3M'] + \
    ['discard %dG 1G' % i for i in range(32)]
WRITES_MORE = ['write -P 0xa5 8G 512', 'write -P 0xa5 2G 4k']
BAD_OUTPUT = re.compile(r'Sanitizer|runtime error|[Aa]ssertion|\*\*ERROR\*\*')
LOAD_TRACE = 'dirty_bitmap_load_enter'

RUNTIME_SETS = (
    lambda i, bw: {'downtime-limit': 300 + i % 100},
    lambda i, bw: {'max-postcopy-bandwidth': bw + (i % 16) * 4096},
    lambda i, bw: {'x-checkpoint-delay': 200 + i % 100},
    lambda i, bw: {'max-bandwidth': bw + (i % 16) * 4096},
    lambda i, bw: {'throttle-trigger-threshold': 50 + i % 50,
                   'cpu-throttle-increment': 10 + i % 10},
)


def bitmap_mapping(node, side, pad):
    """The block-bitmap-mapping of @side (0 source, 1 destination)."""
    names = [(b[0], b[2])[side] for b in BITMAPS]
    mapping = [{'node-name': node, 'alias': 'disk0',
                'bitmaps': [{'name': n, 'alias': b[1]}
                            for n, b in zip(names, BITMAPS)]}]
    mapping += [{'node-name': 'pad-node%d' % i, 'alias': 'pad%d' % i,
                 'bitmaps': [{'name': 'pad-bitmap%d' % j,
                              'alias': 'pad-alias%d' % j}
                             for j in range(4)]}
                for i in range(pad)]
    return mapping


def hammer_runtime(path, running, bw, mapping_len, result):
    """On a new QMP connection to @path, send runtime
    migrate-set-parameters and (one request in three)
    query-migrate-parameters while @running() holds."""
    q = None
    sets = queries = 0
    errors = result['errors']
    t0 = time.monotonic()
    try:
        q = QMP(path)
        while running():
            if (sets + queries) % 3 == 2:
                resp = q.cmd_raw('query-migrate-parameters')
                queries += 1
                if 'error' in resp:
                    errors.append(resp['error'])
                elif len(resp['return'].get('block-bitmap-mapping', [])) \
                        != mapping_len:
                    errors.append('query-migrate-parameters: a mapping of '
                                  '%d nodes' % len(resp['return'].get(
                                      'block-bitmap-mapping', [])))
            else:
                resp = q.cmd_raw('migrate-set-parameters', RUNTIME_SETS[
                    sets % len(RUNTIME_SETS)](sets, bw))
                sets += 1
                if 'error' in resp:
                    errors.append(resp['error'])
    except Exception as e:      # noqa: B902 - a failed request
        errors.append(repr(e))
    finally:
        if q:
            q.close()
        result.update(sets=sets, queries=queries,
                      seconds=time.monotonic() - t0)


def load_count(vm):
    return vm.output().count(LOAD_TRACE)


def query_bitmaps(vm):
    """{name: bitmap info} of the disk drive0 of @vm."""
    for dev in vm.cmd('query-block'):
        if dev.get('device') == 'drive0':
            return {b['name']: b for b in
                    dev.get('inserted', {}).get('dirty-bitmaps', [])}
    raise RuntimeError('%s: no drive0 in query-block' % vm.name)


def bitmap_round(args, tmp, ram, n, qemu_img, bw):
    """One migration; return (problems, stats)."""
    rdir = os.path.join(tmp, 'round%d' % n)
    os.mkdir(rdir)
    problems = []
    stats = {'src': {}, 'dst': {}, 'postcopy': 0.0, 'loads': 0}
    vms = []
    for name, node, ramobj, extra in (
            ('src', 'src-disk', 'memory-backend-file,id=ram0,size=%dM,'
             'mem-path=%s,share=off' % (RAM_MB, ram), []),
            ('dst', 'dst-disk', 'memory-backend-ram,id=ram0,size=%dM' %
             RAM_MB, ['-incoming', 'defer', '-trace', LOAD_TRACE])):
        disk = os.path.join(rdir, name + '.qcow2')
        vm = VM(args.binary, name=name, tmpdir=rdir,
                machine='q35,memory-backend=ram0',
                args=['-object', ramobj,
                      '-drive', 'if=none,id=drive0,file=%s,format=qcow2,'
                      'node-name=%s,discard=unmap' % (disk, node),
                      '-qmp', 'unix:%s,server=on,wait=off' %
                      os.path.join(rdir, name + '-2.qmp')] + extra)
        vm.args[vm.args.index('64M')] = '%dM' % RAM_MB
        vm.node, vm.disk = node, disk
        vms.append(vm)
    src, dst = vms
    flags = {'src': False, 'dst': False}
    threads = []
    try:
        for vm in vms:
            subprocess.run([qemu_img, 'create', '-q', '-f', 'qcow2', vm.disk,
                            DISK_SIZE], check=True)
            vm.start()
        # temp and off see the discards, pers and local only the last
        # writes, empty nothing
        bitmaps = {b[0]: b for b in BITMAPS}
        bitmaps[UNMAPPED] = (UNMAPPED, None, None, 65536, False)
        for step in ('add temp', 'add off', WRITES_ALL, 'disable off',
                     'add pers', 'add ' + UNMAPPED, WRITES_MORE,
                     'add empty'):
            if isinstance(step, list):
                for w in step:
                    # (its output does not come back; the counts are
                    # checked below)
                    out = src.hmp('qemu-io drive0 "%s"' % w)
                    if 'rror' in out or 'failed' in out:
                        raise RuntimeError('qemu-io %s: %s' % (w, out))
            elif step.startswith('add '):
                name, _, _, gran, persistent = bitmaps[step[4:]]
                src.cmd('block-dirty-bitmap-add',
                        {'node': 'src-disk', 'name': name,
                         'granularity': gran, 'persistent': persistent})
            else:
                src.cmd('block-dirty-bitmap-disable',
                        {'node': 'src-disk', 'name': step[8:]})
        want = query_bitmaps(src)
        whole, writes = int(DISK_SIZE[:-1]) << 30, 2 * 65536
        counts = {'temp': whole, 'off': whole, 'pers': writes,
                  UNMAPPED: writes, 'empty': 0}
        if {k: b['count'] for k, b in want.items()} != counts:
            raise RuntimeError('source bitmaps: %r' % want)

        caps = [{'capability': c, 'state': True}
                for c in ('events', 'dirty-bitmaps', 'postcopy-ram')]
        mappings = {}
        for side, vm in enumerate(vms):
            vm.cmd('migrate-set-capabilities', capabilities=caps)
            mappings[vm.name] = bitmap_mapping(vm.node, side, args.pad)
            vm.cmd('migrate-set-parameters',
                   {'block-bitmap-mapping': mappings[vm.name]})
        src.cmd('migrate-set-parameters', {'max-bandwidth': bw,
                                           'max-postcopy-bandwidth': bw})
        sock = os.path.join(rdir, 'migrate.sock')
        dst.cmd('migrate-incoming', uri='unix:' + sock)
        src.cmd('migrate', uri='unix:' + sock)
        src.cmd('migrate-start-postcopy')
        dst.wait_for(lambda: dst.migration_status() == 'postcopy-active',
                     'postcopy-active', timeout=60, interval=0.01)

        t0 = time.monotonic()
        loads0 = load_count(dst)
        flags['src'] = flags['dst'] = True
        for vm in vms:
            t = threading.Thread(target=hammer_runtime, args=(
                os.path.join(rdir, vm.name + '-2.qmp'),
                lambda n=vm.name: flags[n], bw, 1 + args.pad,
                stats[vm.name]))
            stats[vm.name]['errors'] = []
            threads.append(t)
            t.start()
        # the random RAM and the bits of temp and off, at @bw
        deadline = t0 + 120 + 4 * ((RANDOM_MB << 20) + (whole >> 12) +
                                   (whole >> 15)) / bw
        while (flags['src'] or flags['dst']) and time.monotonic() < deadline:
            for vm in vms:
                st = vm.migration_status() if flags[vm.name] else None
                if vm is dst and st != 'postcopy-active' and \
                        not stats['postcopy']:
                    stats['postcopy'] = time.monotonic() - t0
                if st in ('completed', 'failed', 'cancelled'):
                    flags[vm.name] = False
                    if vm is dst:
                        stats['loads'] = load_count(dst) - loads0
            time.sleep(0.05)
        if flags['src'] or flags['dst']:
            problems.append('migration still running after %.0f s' %
                            (time.monotonic() - t0))
        flags['src'] = flags['dst'] = False
        for t in threads:
            t.join(120)
        for vm in vms:
            st = vm.wait_migration_end(timeout=120)
            if st != 'completed':
                problems.append('%s: migration %s' % (vm.name, st))
            res = stats[vm.name]
            if res['errors']:
                problems.append('%s: %d failed requests: %r' % (
                    vm.name, len(res['errors']), res['errors'][:5]))
            if res.get('sets', 0) < 10:
                problems.append('%s: only %d parameter changes while '
                                'migrating' % (vm.name, res.get('sets', 0)))
        if stats['loads'] == 0:
            problems.append('no dirty-bitmap load on the destination while '
                            'the requests ran')

        got = query_bitmaps(dst)
        keys = ('count', 'granularity', 'persistent', 'recording')
        for name, alias, dname, gran, persistent in BITMAPS:
            b = got.get(dname)
            w = {k: want[name][k] for k in keys}
            if not b or {k: b.get(k) for k in keys} != w:
                problems.append('destination bitmap %s: %r, want %r' %
                                (dname, b, w))
        extra = sorted(set(got) - set(b[2] for b in BITMAPS))
        if extra:
            problems.append('destination has bitmaps %s' % extra)
    except Exception as e:      # noqa: B902 - reported as a failed round
        died = ['%s exited with %d' % (vm.name, vm.proc.poll())
                for vm in vms if vm.proc and vm.proc.poll() is not None]
        problems.append('unexpected exception: %r%s' % (
            e, ' (%s)' % ', '.join(died) if died else ''))
    finally:
        flags['src'] = flags['dst'] = False
        for t in threads:
            t.join(120)
        for vm in vms:
            alive = vm.proc is not None and vm.proc.poll() is None
            rc = vm.shutdown()
            out = keep_log(args, vm, 'postcopy-bitmaps-%d-%s' % (n, vm.name))
            bad = [line for line in out.splitlines()
                   if BAD_OUTPUT.search(line)]
            if not alive or rc != 0 or bad:
                tail = [line for line in out.splitlines()
                        if LOAD_TRACE not in line][-40:]
                if rc is not None and rc < 0:
                    rc = '%d (%s)' % (rc, signal.Signals(-rc).name)
                problems.append('%s: %s, exit status %s%s' % (
                    vm.name, 'alive' if alive else 'dead', rc,
                    ''.join('\n' + line for line in bad[:10] + tail)))
            vm.cleanup()
    shutil.rmtree(rdir, ignore_errors=True)
    return problems, stats


def postcopy_bitmaps(args, tap):
    qemu_img = args.qemu_img or os.path.join(os.path.dirname(args.binary),
                                             'qemu-img')
    bw = args.postcopy_bandwidth << 20
    tmp = tempfile.mkdtemp(prefix='qemu-series-')
    total = {'src': [0, 0.0], 'dst': [0, 0.0], 'loads': 0, 'time': 0.0}
    failed = 0
    try:
        ram = os.path.join(tmp, 'ram.bin')
        random_ram(ram, RANDOM_MB)
        for n in range(1, args.rounds + 1):
            t0 = time.monotonic()
            problems, stats = bitmap_round(args, tmp, ram, n, qemu_img, bw)
            total['time'] += time.monotonic() - t0
            total['loads'] += stats['loads']
            desc = []
            for side in ('dst', 'src'):
                s = stats[side]
                reqs = s.get('sets', 0) + s.get('queries', 0)
                secs = s.get('seconds', 0.0)
                total[side][0] += reqs
                total[side][1] += secs
                desc.append('%s %d requests (%.0f/s)' % (
                    side, reqs, reqs / secs if secs else 0))
            failed += bool(problems)
            tap.ok(not problems, '%s round %d: %.1f s in postcopy, %s, '
                   '%d bitmap loads on dst meanwhile, %.1f s' % (
                       args.label, n, stats['postcopy'], ', '.join(desc),
                       stats['loads'], time.monotonic() - t0),
                   '\n'.join(problems))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rates = ['%s %d requests (%.0f/s)' % (
        side, total[side][0],
        total[side][0] / total[side][1] if total[side][1] else 0)
        for side in ('dst', 'src')]
    print('# %s: %d runs, %d failed, %s, %d bitmap loads on dst during '
          'them, %.1f s a round' % (
              args.label, args.rounds, failed, ', '.join(rates),
              total['loads'], total['time'] / max(args.rounds, 1)),
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--mode', choices=('multifd-tls', 'postcopy-bitmaps'),
                    default='multifd-tls')
    ap.add_argument('--requests', type=int, default=1000,
                    help='multifd-tls: requests a side')
    ap.add_argument('--rounds', type=int, default=5,
                    help='postcopy-bitmaps: migrations')
    ap.add_argument('--postcopy-bandwidth', type=int, default=2,
                    metavar='MIB', help='postcopy-bitmaps: MiB/s')
    ap.add_argument('--pad', type=int, default=64,
                    help='postcopy-bitmaps: unused nodes in the mapping')
    ap.add_argument('--qemu-img', help='postcopy-bitmaps: default is '
                    'qemu-img next to BINARY')
    ap.add_argument('--label', default='qemu')
    ap.add_argument('--logdir', help='keep the QEMU logs here')
    ap.add_argument('binary')
    args = ap.parse_args()
    tap = TAP()
    if args.mode == 'multifd-tls':
        multifd_tls(args, tap)
    else:
        postcopy_bitmaps(args, tap)
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())
