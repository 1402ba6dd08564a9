# SPDX-License-Identifier: GPL-2.0-or-later
"""A small Linux guest for tests and benchmarks, made at test time from
Debian packages: the kernel of linux-image-amd64 and an initramfs with
busybox-static and the virtio-net modules.  Its init brings eth0 up
with a fixed address, so that the host can ping it; the kernel answers
the pings.  The packages are downloaded with apt-get (Debian's archive)
and cached in ~/.cache/qemu-series/guest/ (QEMU_SERIES_CACHE), like the
base tarball.

guest_files() returns (kernel, initrd), or raises GuestUnavailable with
the reason.
"""

import glob
import hashlib
import gzip
import io
import os
import shutil
import subprocess
import tarfile
import tempfile

# in load order
MODULES = ['drivers/virtio/virtio_ring.ko', 'drivers/virtio/virtio.ko',
           'drivers/virtio/virtio_pci_legacy_dev.ko',
           'drivers/virtio/virtio_pci_modern_dev.ko',
           'drivers/virtio/virtio_pci.ko', 'net/core/failover.ko',
           'drivers/net/net_failover.ko', 'drivers/net/virtio_net.ko']

INIT = '''#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in %s; do /bin/busybox insmod /lib/$m; done
/bin/busybox ip link set lo up
/bin/busybox ip link set eth0 up
/bin/busybox ip addr add %%s dev eth0
echo QUEUES $(/bin/busybox ls /sys/class/net/eth0/queues) > /dev/ttyS0
echo GUEST-READY > /dev/ttyS0
while true; do /bin/busybox sleep 3600; done
''' % ' '.join(os.path.basename(m) for m in MODULES)


class GuestUnavailable(Exception):
    pass


def cache_dir():
    base = os.environ.get('QEMU_SERIES_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
        'qemu-series')
    d = os.path.join(base, 'guest')
    os.makedirs(d, exist_ok=True)
    return d


def _download(d, pattern, package):
    debs = glob.glob(os.path.join(d, pattern))
    if not debs:
        try:
            subprocess.run(['apt-get', 'download', package], cwd=d,
                           check=True, capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as e:
            raise GuestUnavailable('cannot download %s: %s' % (package, e))
        debs = glob.glob(os.path.join(d, pattern))
    if not debs:
        raise GuestUnavailable('no %s package' % package)
    return sorted(debs)[-1]


def _kernel_package():
    try:
        out = subprocess.run(['apt-cache', 'depends', 'linux-image-amd64'],
                             check=True, capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise GuestUnavailable('apt-cache: %s' % e)
    for line in out.splitlines():
        line = line.strip()
        if line.startswith('Depends: linux-image-'):
            return line.split()[1]
    raise GuestUnavailable('linux-image-amd64 depends on no kernel')


def guest_files(address='10.0.0.2/24'):
    d = cache_dir()
    # the initramfs is built again when its init changes
    key = '%s-%s' % (address.replace('/', '_'),
                     hashlib.sha256(INIT.encode()).hexdigest()[:12])
    kernel = os.path.join(d, 'vmlinuz')
    initrd = os.path.join(d, 'initrd-%s.gz' % key)
    if os.path.exists(kernel) and os.path.exists(initrd):
        return kernel, initrd
    kdeb = _download(d, 'linux-image-*-amd64_*.deb', _kernel_package())
    bdeb = _download(d, 'busybox-static_*.deb', 'busybox-static')
    with tempfile.TemporaryDirectory() as tmp:
        for deb in (kdeb, bdeb):
            subprocess.run(['dpkg-deb', '-x', deb, tmp], check=True)
        vmlinuz = glob.glob(os.path.join(tmp, 'boot', 'vmlinuz-*'))
        moddir = glob.glob(os.path.join(tmp, 'lib', 'modules', '*',
                                        'kernel'))
        if not vmlinuz or not moddir:
            raise GuestUnavailable('no kernel or modules in %s' % kdeb)
        buf = io.BytesIO()
        # a newc cpio archive, written with the cpio tool if there is
        # one, by busybox otherwise
        root = os.path.join(tmp, 'root')
        os.makedirs(os.path.join(root, 'bin'))
        os.makedirs(os.path.join(root, 'lib'))
        shutil.copy(os.path.join(tmp, 'bin', 'busybox'),
                    os.path.join(root, 'bin', 'busybox'))
        for m in MODULES:
            shutil.copy(os.path.join(moddir[0], m),
                        os.path.join(root, 'lib', os.path.basename(m)))
        with open(os.path.join(root, 'init'), 'w') as f:
            f.write(INIT % address)
        os.chmod(os.path.join(root, 'init'), 0o755)
        files = subprocess.run(
            'cd %s && find . | sort' % root, shell=True, check=True,
            capture_output=True).stdout
        cpio = subprocess.run(
            [os.path.join(root, 'bin', 'busybox'), 'cpio', '-o', '-H',
             'newc'], cwd=root, input=files, check=True,
            capture_output=True).stdout
        buf.write(cpio)
        shutil.copy(vmlinuz[0], kernel + '.tmp')
        os.replace(kernel + '.tmp', kernel)
        with gzip.open(initrd + '.tmp', 'wb') as f:
            f.write(buf.getvalue())
        os.replace(initrd + '.tmp', initrd)
    return kernel, initrd


def kernel_package():
    """The name of the cached kernel package, for reports"""
    debs = sorted(glob.glob(os.path.join(cache_dir(),
                                         'linux-image-*-amd64_*.deb')))
    return os.path.basename(debs[-1]) if debs else 'unknown'


def guest_args(kernel, initrd):
    return ['-kernel', kernel, '-initrd', initrd, '-m', '256M',
            '-append', 'console=ttyS0 quiet panic=-1']
