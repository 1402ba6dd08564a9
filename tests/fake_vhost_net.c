// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A userspace model of the kernel's vhost-net device, for machines whose
 * kernel has none (no /dev/vhost-net): preloaded into QEMU (LD_PRELOAD),
 * it answers open("/dev/vhost-net") with a device of its own and carries
 * the vhost ioctls out as the kernel does, on the same process's memory,
 * so that QEMU's vhost=on path (vhost_net_init/start/stop, the dirty log
 * during a migration, the tap fd given with VHOST_NET_SET_BACKEND) runs
 * for real: a worker thread per device moves the packets between the
 * guest's split virtqueues and the tap fd.
 *
 * What it offers: VIRTIO_F_VERSION_1, VIRTIO_F_ANY_LAYOUT and
 * VHOST_F_LOG_ALL; no indirect descriptors, event index or mergeable
 * receive buffers (QEMU then hides them from the guest), and the vnet
 * header passes through (the tap has one, so QEMU does not ask for
 * VHOST_NET_F_VIRTIO_NET_HDR).  As in the kernel, the device keeps a
 * reference of its own to every fd it is given (kick, call, the tap's),
 * so what QEMU does later with the fd numbers does not reach it; it
 * takes only eventfds for kick, call, err and the log, only a tap for
 * VHOST_NET_SET_BACKEND, at most 64 memory regions (the kernel's
 * default), and discards a received packet larger than the buffers.
 * It does not check that the rings are in guest memory, nor that the
 * caller is the owner's process (so no vhostfd= passed by another one).
 *
 * FAKE_VHOST_NET_LOG=FILE: a line per event ("open fd=12", "owner fd=12",
 * "backend vq=0 ifname=tap0", "refused backend vq=0 fd=15: not a tap",
 * "detach vq=0 packets=12", "close fd=12 rx=12 tx=10"), after the pid,
 * for tests to read.  FAKE_VHOST_NET_DEBUG=1 adds every ioctl.
 *
 * Build: gcc -shared -fPIC -O2 -o fake_vhost_net.so fake_vhost_net.c
 *        -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define VHOST_PATH "/dev/vhost-net"
#define NVQ 2                   /* vhost-net: 0 receives, 1 transmits */
#define MAX_IOV 1024
#define LOG_PAGE 4096
#define OFFERED ((1ULL << VIRTIO_F_VERSION_1) | \
                 (1ULL << VIRTIO_F_ANY_LAYOUT) | \
                 (1ULL << VHOST_F_LOG_ALL))

struct vq {
    unsigned num;
    uint16_t last_avail;
    uint16_t used_idx;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint64_t log_guest_addr;
    bool log_used;
    int kick, call, err;        /* our own references, or -1 */
    int backend;                /* our reference to the tap, or -1 */
    bool tx_blocked;            /* the tap would block: wait for POLLOUT */
    bool broken;                /* a bad ring: nothing more until reset */
};

struct dev {
    int fd;                     /* the number QEMU has */
    pthread_mutex_t lock;
    pthread_t worker;
    bool owned;
    bool stop;
    int wake;                   /* eventfd: the configuration changed */
    unsigned gen;
    uint64_t features;
    struct vhost_memory_region *regions;
    unsigned nregions;
    uint64_t *log;
    struct vq vq[NVQ];
    int graveyard[4 * NVQ + 8]; /* fds the worker may still poll */
    unsigned ngrave;
    uint64_t packets[NVQ];
    uint64_t dropped;           /* received packets too large for the ring */
    struct dev *next;
};

static pthread_mutex_t devs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dev *devs;

static int (*real_openat)(int, const char *, int, ...);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_close)(int);

static void resolve(void)
{
    if (real_close) {
        return;
    }
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_ioctl = dlsym(RTLD_NEXT, "ioctl");
    real_close = dlsym(RTLD_NEXT, "close");
}

static void vlog(const char *fmt, ...)
{
    const char *path = getenv("FAKE_VHOST_NET_LOG");
    char line[512];
    va_list ap;
    int n, fd;

    if (!path) {
        return;
    }
    n = snprintf(line, sizeof(line), "%d ", getpid());
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 2) {
        n = sizeof(line) - 2;
    }
    line[n++] = '\n';
    fd = real_openat(AT_FDCWD, path,
                     O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, line, n) < 0) {
            /* nothing to do */
        }
        real_close(fd);
    }
}

static struct dev *find_dev(int fd)
{
    struct dev *d;

    pthread_mutex_lock(&devs_lock);
    for (d = devs; d && d->fd != fd; d = d->next) {
        continue;
    }
    pthread_mutex_unlock(&devs_lock);
    return d;
}

/* Guest physical address to a pointer in this process, or NULL */
static void *gpa_to_hva(struct dev *d, uint64_t gpa, uint64_t len,
                        uint64_t *avail_len)
{
    unsigned i;

    for (i = 0; i < d->nregions; i++) {
        struct vhost_memory_region *r = &d->regions[i];

        if (gpa >= r->guest_phys_addr &&
            gpa - r->guest_phys_addr < r->memory_size) {
            uint64_t off = gpa - r->guest_phys_addr;

            *avail_len = r->memory_size - off;
            if (*avail_len > len) {
                *avail_len = len;
            }
            return (void *)(uintptr_t)(r->userspace_addr + off);
        }
    }
    return NULL;
}

static bool logging(struct dev *d)
{
    return d->log && (d->features & (1ULL << VHOST_F_LOG_ALL));
}

static void log_write(struct dev *d, uint64_t gpa, uint64_t len)
{
    uint64_t page;

    if (!logging(d) || !len) {
        return;
    }
    for (page = gpa / LOG_PAGE; page <= (gpa + len - 1) / LOG_PAGE; page++) {
        __atomic_fetch_or(&d->log[page / 64], 1ULL << (page % 64),
                          __ATOMIC_RELAXED);
    }
}

static void log_used(struct dev *d, struct vq *vq, uint64_t off,
                     uint64_t len)
{
    if (vq->log_used) {
        log_write(d, vq->log_guest_addr + off, len);
    }
}

static void vq_error(struct dev *d, struct vq *vq, const char *what)
{
    uint64_t one = 1;

    vq->broken = true;
    vlog("error vq=%ld: %s", (long)(vq - d->vq), what);
    if (vq->err >= 0 && write(vq->err, &one, sizeof(one)) < 0) {
        /* nothing to do */
    }
}

/*
 * The descriptor chain at @head as an iovec of the buffers the device
 * reads (@write false) or writes (@write true); their guest addresses in
 * @gpa (for the dirty log).  The number of entries, or -1.
 */
static int map_chain(struct dev *d, struct vq *vq, uint16_t head,
                     bool write, struct iovec *iov, uint64_t *gpa)
{
    unsigned i = head, n = 0, hops = 0;

    for (;;) {
        struct vring_desc *desc;
        uint64_t addr, len;

        if (i >= vq->num || ++hops > vq->num) {
            vq_error(d, vq, "bad descriptor index or loop");
            return -1;
        }
        desc = &vq->desc[i];
        if (desc->flags & VRING_DESC_F_INDIRECT) {
            vq_error(d, vq, "indirect descriptor (not offered)");
            return -1;
        }
        if (!!(desc->flags & VRING_DESC_F_WRITE) != write) {
            vq_error(d, vq, "descriptor of the wrong direction");
            return -1;
        }
        addr = desc->addr;
        len = desc->len;
        while (len) {
            uint64_t chunk;
            void *p = gpa_to_hva(d, addr, len, &chunk);

            if (!p || n == MAX_IOV) {
                vq_error(d, vq, "descriptor outside guest memory");
                return -1;
            }
            iov[n].iov_base = p;
            iov[n].iov_len = chunk;
            gpa[n] = addr;
            n++;
            addr += chunk;
            len -= chunk;
        }
        if (!(desc->flags & VRING_DESC_F_NEXT)) {
            return n;
        }
        i = desc->next;
    }
}

static void push_used(struct dev *d, struct vq *vq, uint16_t head,
                      uint32_t len)
{
    unsigned slot = vq->used_idx % vq->num;

    vq->used->ring[slot].id = head;
    vq->used->ring[slot].len = len;
    log_used(d, vq, offsetof(struct vring_used, ring) +
             slot * sizeof(struct vring_used_elem),
             sizeof(vq->used->ring[slot]));
    vq->used_idx++;
    __atomic_store_n(&vq->used->idx, vq->used_idx, __ATOMIC_RELEASE);
    log_used(d, vq, offsetof(struct vring_used, idx),
             sizeof(vq->used->idx));
}

static void notify(struct vq *vq)
{
    uint64_t one = 1;

    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!(vq->avail->flags & VRING_AVAIL_F_NO_INTERRUPT) && vq->call >= 0 &&
        write(vq->call, &one, sizeof(one)) < 0) {
        /* nothing to do */
    }
}

static bool vq_ready(struct vq *vq)
{
    return vq->desc && vq->avail && vq->used && vq->num &&
           vq->backend >= 0 && !vq->broken;
}

static bool has_avail(struct vq *vq)
{
    return __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE) !=
           vq->last_avail;
}

/* Guest to tap */
static void handle_tx(struct dev *d)
{
    struct vq *vq = &d->vq[1];
    static struct iovec iov[MAX_IOV];
    static uint64_t gpa[MAX_IOV];
    bool done = false;

    vq->tx_blocked = false;
    while (vq_ready(vq) && has_avail(vq)) {
        uint16_t head = vq->avail->ring[vq->last_avail % vq->num];
        int n = map_chain(d, vq, head, false, iov, gpa);
        ssize_t r;

        if (n < 0) {
            break;
        }
        r = writev(vq->backend, iov, n);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            vq->tx_blocked = true;
            break;
        }
        /* Other errors drop the packet, as the kernel does */
        vq->last_avail++;
        push_used(d, vq, head, 0);
        d->packets[1]++;
        done = true;
    }
    if (done) {
        notify(vq);
    }
}

static size_t iov_total(const struct iovec *iov, int n)
{
    size_t total = 0;

    while (n--) {
        total += iov[n].iov_len;
    }
    return total;
}

/* Tap to guest */
static void handle_rx(struct dev *d)
{
    struct vq *vq = &d->vq[0];
    static struct iovec iov[MAX_IOV];
    static uint64_t gpa[MAX_IOV];
    bool done = false;

    while (vq_ready(vq) && has_avail(vq)) {
        uint16_t head = vq->avail->ring[vq->last_avail % vq->num];
        int n = map_chain(d, vq, head, true, iov, gpa);
        ssize_t r, left;
        int i;

        if (n < 0) {
            break;
        }
        r = readv(vq->backend, iov, n);
        if (r <= 0) {
            break;
        }
        if ((size_t)r > iov_total(iov, n)) {
            /* Truncated: the kernel discards it and keeps the buffers */
            d->dropped++;
            continue;
        }
        for (i = 0, left = r; i < n && left > 0; i++) {
            uint64_t len = (size_t)left < iov[i].iov_len ? (size_t)left
                                                         : iov[i].iov_len;

            log_write(d, gpa[i], len);
            left -= len;
        }
        vq->last_avail++;
        push_used(d, vq, head, r);
        d->packets[0]++;
        done = true;
    }
    if (done) {
        notify(vq);
    }
}

/* A reference the worker may be polling: closed by the worker */
static void bury(struct dev *d, int fd)
{
    if (fd < 0) {
        return;
    }
    if (d->ngrave == sizeof(d->graveyard) / sizeof(d->graveyard[0])) {
        real_close(fd);         /* cannot happen: the worker empties it */
        return;
    }
    d->graveyard[d->ngrave++] = fd;
}

static void changed(struct dev *d)
{
    uint64_t one = 1;

    d->gen++;
    if (write(d->wake, &one, sizeof(one)) < 0) {
        /* nothing to do */
    }
}

static void *worker(void *opaque)
{
    struct dev *d = opaque;

    pthread_mutex_lock(&d->lock);
    while (!d->stop) {
        struct pollfd pfd[1 + 3];
        int kick_at[NVQ] = { -1, -1 }, tap_at[NVQ] = { -1, -1 };
        unsigned gen = d->gen, n = 0, i;
        uint64_t v;

        while (d->ngrave) {
            real_close(d->graveyard[--d->ngrave]);
        }
        pfd[n].fd = d->wake;
        pfd[n++].events = POLLIN;
        for (i = 0; i < NVQ; i++) {
            struct vq *vq = &d->vq[i];

            if (!vq_ready(vq)) {
                continue;
            }
            if (vq->kick >= 0) {
                kick_at[i] = n;
                pfd[n].fd = vq->kick;
                pfd[n++].events = POLLIN;
            }
            /* Receive when the guest has buffers; send when unblocked */
            if ((i == 0 && has_avail(vq)) || (i == 1 && vq->tx_blocked)) {
                tap_at[i] = n;
                pfd[n].fd = vq->backend;
                pfd[n++].events = i == 0 ? POLLIN : POLLOUT;
            }
        }
        pthread_mutex_unlock(&d->lock);
        if (poll(pfd, n, -1) < 0 && errno != EINTR) {
            pthread_mutex_lock(&d->lock);
            vlog("error poll: %s", strerror(errno));
            break;
        }
        pthread_mutex_lock(&d->lock);
        if (pfd[0].revents & POLLIN) {
            if (read(d->wake, &v, sizeof(v)) < 0) {
                /* nothing to do */
            }
        }
        if (gen != d->gen) {
            /* The fds polled may be gone: look again, and at the rings */
            for (i = 0; i < NVQ; i++) {
                if (vq_ready(&d->vq[i])) {
                    i == 0 ? handle_rx(d) : handle_tx(d);
                }
            }
            continue;
        }
        for (i = 0; i < NVQ; i++) {
            bool kicked = kick_at[i] >= 0 && pfd[kick_at[i]].revents;
            bool tap = tap_at[i] >= 0 && pfd[tap_at[i]].revents;

            if (kicked && read(d->vq[i].kick, &v, sizeof(v)) < 0) {
                /* nothing to do */
            }
            if (kicked || tap) {
                i == 0 ? handle_rx(d) : handle_tx(d);
            }
        }
    }
    while (d->ngrave) {
        real_close(d->graveyard[--d->ngrave]);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

static void reset_vq(struct dev *d, struct vq *vq)
{
    bury(d, vq->kick);
    bury(d, vq->call);
    bury(d, vq->err);
    bury(d, vq->backend);
    memset(vq, 0, sizeof(*vq));
    vq->kick = vq->call = vq->err = vq->backend = -1;
}

static int fake_open(int flags)
{
    struct dev *d = calloc(1, sizeof(*d));
    int i;

    if (!d) {
        errno = ENOMEM;
        return -1;
    }
    /* Any fd will do as the device's number: an eventfd */
    d->fd = eventfd(0, (flags & O_CLOEXEC ? EFD_CLOEXEC : 0) |
                       (flags & O_NONBLOCK ? EFD_NONBLOCK : 0));
    d->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (d->fd < 0 || d->wake < 0) {
        int e = errno;

        if (d->fd >= 0) {
            real_close(d->fd);
        }
        free(d);
        errno = e;
        return -1;
    }
    pthread_mutex_init(&d->lock, NULL);
    for (i = 0; i < NVQ; i++) {
        memset(&d->vq[i], 0, sizeof(d->vq[i]));
        d->vq[i].kick = d->vq[i].call = d->vq[i].err = -1;
        d->vq[i].backend = -1;
    }
    pthread_mutex_lock(&devs_lock);
    d->next = devs;
    devs = d;
    pthread_mutex_unlock(&devs_lock);
    vlog("open fd=%d", d->fd);
    return d->fd;
}

static void fake_close(struct dev *d)
{
    struct dev **p;
    int i;

    pthread_mutex_lock(&devs_lock);
    for (p = &devs; *p != d; p = &(*p)->next) {
        continue;
    }
    *p = d->next;
    pthread_mutex_unlock(&devs_lock);

    pthread_mutex_lock(&d->lock);
    d->stop = true;
    changed(d);
    pthread_mutex_unlock(&d->lock);
    if (d->owned) {
        pthread_join(d->worker, NULL);
    }
    for (i = 0; i < NVQ; i++) {
        reset_vq(d, &d->vq[i]);
    }
    while (d->ngrave) {
        real_close(d->graveyard[--d->ngrave]);
    }
    vlog("close fd=%d rx=%llu tx=%llu dropped=%llu", d->fd,
         (unsigned long long)d->packets[0], (unsigned long long)d->packets[1],
         (unsigned long long)d->dropped);
    real_close(d->wake);
    free(d->regions);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* A reference of our own to @fd, or -1 for -1 (unbind) */
static int take_fd(int fd, int *ours)
{
    if (fd == -1) {
        *ours = -1;
        return 0;
    }
    *ours = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return *ours < 0 ? -errno : 0;
}

/* The same for an eventfd, which is all the kernel takes there */
static int take_eventfd(int fd, int *ours)
{
    char path[64], target[64];
    ssize_t n;

    if (fd != -1) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0) {
            return -EBADF;
        }
        target[n] = 0;
        if (strcmp(target, "anon_inode:[eventfd]")) {
            vlog("refused fd=%d: not an eventfd but %s", fd, target);
            return -EINVAL;
        }
    }
    return take_fd(fd, ours);
}

static int vring_ioctl(struct dev *d, unsigned long req, void *arg)
{
    struct vhost_vring_state *st = arg;
    struct vhost_vring_file *f = arg;
    struct vhost_vring_addr *a = arg;
    unsigned index;
    struct vq *vq;
    int fd, r;

    switch (req) {
    case VHOST_SET_VRING_NUM:
    case VHOST_SET_VRING_BASE:
    case VHOST_GET_VRING_BASE:
    case VHOST_SET_VRING_ADDR:
    case VHOST_SET_VRING_KICK:
    case VHOST_SET_VRING_CALL:
    case VHOST_SET_VRING_ERR:
    case VHOST_SET_VRING_BUSYLOOP_TIMEOUT:
    case VHOST_NET_SET_BACKEND:
        break;
    default:
        return -ENOTTY;
    }
    /* The first member of each of their arguments */
    index = *(unsigned *)arg;
    if (index >= NVQ) {
        return -ENOBUFS;
    }
    vq = &d->vq[index];
    switch (req) {
    case VHOST_SET_VRING_NUM:
        if (vq->backend >= 0) {
            return -EBUSY;
        }
        if (!st->num || st->num > 32768 || (st->num & (st->num - 1))) {
            return -EINVAL;
        }
        vq->num = st->num;
        return 0;
    case VHOST_SET_VRING_BASE:
        if (vq->backend >= 0) {
            return -EBUSY;
        }
        if (st->num > 0xffff) {
            return -EINVAL;
        }
        vq->last_avail = st->num;
        return 0;
    case VHOST_GET_VRING_BASE:
        st->num = vq->last_avail;
        return 0;
    case VHOST_SET_VRING_ADDR:
        if (a->flags & ~(1U << VHOST_VRING_F_LOG)) {
            return -EOPNOTSUPP;
        }
        /* The alignments of the split ring */
        if ((a->desc_user_addr & 15) || (a->avail_user_addr & 1) ||
            (a->used_user_addr & 3)) {
            return -EINVAL;
        }
        vq->desc = (void *)(uintptr_t)a->desc_user_addr;
        vq->avail = (void *)(uintptr_t)a->avail_user_addr;
        vq->used = (void *)(uintptr_t)a->used_user_addr;
        vq->log_guest_addr = a->log_guest_addr;
        vq->log_used = a->flags & (1U << VHOST_VRING_F_LOG);
        changed(d);
        return 0;
    case VHOST_SET_VRING_KICK:
    case VHOST_SET_VRING_CALL:
    case VHOST_SET_VRING_ERR:
        r = take_eventfd(f->fd, &fd);
        if (r < 0) {
            return r;
        }
        if (req == VHOST_SET_VRING_KICK) {
            bury(d, vq->kick);
            vq->kick = fd;
        } else if (req == VHOST_SET_VRING_CALL) {
            bury(d, vq->call);
            vq->call = fd;
        } else {
            bury(d, vq->err);
            vq->err = fd;
        }
        changed(d);
        return 0;
    case VHOST_SET_VRING_BUSYLOOP_TIMEOUT:
        return 0;
    case VHOST_NET_SET_BACKEND: {
        struct ifreq ifr = { 0 };
        uint64_t packets = d->packets[index];

        if (f->fd != -1 && real_ioctl(f->fd, TUNGETIFF, &ifr) < 0) {
            /* The kernel's get_socket(): a tap or a socket */
            vlog("refused backend vq=%u fd=%d: not a tap", index, f->fd);
            return -ENOTSOCK;
        }
        r = take_fd(f->fd, &fd);
        if (r < 0) {
            return r;
        }
        bury(d, vq->backend);
        vq->backend = fd;
        vq->tx_blocked = false;
        vq->broken = false;
        if (fd >= 0) {
            if (!vq->used) {
                vq->backend = -1;
                bury(d, fd);
                return -EFAULT;
            }
            /* The kernel's vhost_vq_init_access() */
            vq->used_idx = __atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE);
            vlog("backend vq=%u ifname=%s", index, ifr.ifr_name);
        } else {
            vlog("detach vq=%u packets=%llu", index,
                 (unsigned long long)packets);
        }
        changed(d);
        return 0;
    }
    default:
        return -ENOTTY;
    }
}

static int dev_ioctl(struct dev *d, unsigned long req, void *arg)
{
    uint64_t *u64 = arg;
    int fd, r, i;

    if (req == VHOST_SET_OWNER) {
        if (d->owned) {
            return -EBUSY;
        }
        r = pthread_create(&d->worker, NULL, worker, d);
        if (r) {
            return -r;
        }
        d->owned = true;
        vlog("owner fd=%d", d->fd);
        return 0;
    }
    if (req == VHOST_GET_FEATURES) {
        *u64 = OFFERED;
        return 0;
    }
    if (!d->owned) {
        return -EPERM;
    }
    switch (req) {
    case VHOST_SET_FEATURES:
        if (*u64 & ~OFFERED) {
            return -EOPNOTSUPP;
        }
        d->features = *u64;
        return 0;
    case VHOST_GET_BACKEND_FEATURES:
        *u64 = 0;
        return 0;
    case VHOST_SET_BACKEND_FEATURES:
        return *u64 ? -EOPNOTSUPP : 0;
    case VHOST_SET_MEM_TABLE: {
        struct vhost_memory *m = arg;
        struct vhost_memory_region *regions;
        unsigned i;

        if (m->padding) {
            return -EOPNOTSUPP;
        }
        /* The kernel's default max_mem_regions, which QEMU assumes */
        if (m->nregions > 64) {
            return -E2BIG;
        }
        for (i = 0; i < m->nregions; i++) {
            struct vhost_memory_region *r = &m->regions[i];

            if (!r->memory_size ||
                r->guest_phys_addr + r->memory_size - 1 < r->guest_phys_addr ||
                r->userspace_addr + r->memory_size - 1 < r->userspace_addr) {
                return -EFAULT;
            }
        }
        regions = calloc(m->nregions ? m->nregions : 1, sizeof(*regions));
        if (!regions) {
            return -ENOMEM;
        }
        memcpy(regions, m->regions, m->nregions * sizeof(*regions));
        free(d->regions);
        d->regions = regions;
        d->nregions = m->nregions;
        return 0;
    }
    case VHOST_SET_LOG_BASE:
        d->log = (uint64_t *)(uintptr_t)*u64;
        return 0;
    case VHOST_SET_LOG_FD:
        r = take_eventfd(*(int *)arg, &fd);
        if (r == 0 && fd >= 0) {
            bury(d, fd);        /* never signalled: the log does not grow */
        }
        return r;
    case VHOST_RESET_OWNER:
        for (i = 0; i < NVQ; i++) {
            reset_vq(d, &d->vq[i]);
        }
        d->features = 0;
        d->log = NULL;
        changed(d);
        return 0;
    default:
        return vring_ioctl(d, req, arg);
    }
}

int ioctl(int fd, unsigned long req, ...)
{
    struct dev *d;
    va_list ap;
    void *arg;
    int r;

    resolve();
    va_start(ap, req);
    arg = va_arg(ap, void *);
    va_end(ap);
    d = find_dev(fd);
    if (!d) {
        return real_ioctl(fd, req, arg);
    }
    pthread_mutex_lock(&d->lock);
    r = dev_ioctl(d, req, arg);
    pthread_mutex_unlock(&d->lock);
    if (getenv("FAKE_VHOST_NET_DEBUG")) {
        vlog("ioctl fd=%d req=%#lx -> %d", fd, req, r);
    }
    if (r < 0) {
        errno = -r;
        return -1;
    }
    return r;
}

int close(int fd)
{
    struct dev *d;

    resolve();
    d = find_dev(fd);
    if (d) {
        fake_close(d);
    }
    return real_close(fd);
}

static bool is_vhost(const char *path)
{
    return path && !strcmp(path, VHOST_PATH);
}

/*
 * open() and its variants: the vhost device is ours, the rest libc's.
 * open(path, ...) is openat(AT_FDCWD, path, ...), and on a 64-bit host
 * the *64 forms are the same calls.
 */
static int do_open(int dirfd, const char *path, int flags, mode_t mode)
{
    resolve();
    return is_vhost(path) ? fake_open(flags)
                          : real_openat(dirfd, path, flags, mode);
}

/* The mode argument, which only an open that may create a file has */
#define OPEN_MODE(flags)                                                \
    ({                                                                  \
        va_list ap_;                                                    \
        mode_t mode_ = 0;                                               \
        if (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE) { \
            va_start(ap_, flags);                                       \
            mode_ = va_arg(ap_, mode_t);                                \
            va_end(ap_);                                                \
        }                                                               \
        mode_;                                                          \
    })

int open(const char *path, int flags, ...)
{
    return do_open(AT_FDCWD, path, flags, OPEN_MODE(flags));
}

int open64(const char *path, int flags, ...)
{
    return do_open(AT_FDCWD, path, flags, OPEN_MODE(flags));
}

int openat(int dirfd, const char *path, int flags, ...)
{
    return do_open(dirfd, path, flags, OPEN_MODE(flags));
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    return do_open(dirfd, path, flags, OPEN_MODE(flags));
}

/* What _FORTIFY_SOURCE makes of an open() without a mode */
int __open_2(const char *path, int flags)
{
    return do_open(AT_FDCWD, path, flags, 0);
}

int __open64_2(const char *path, int flags)
{
    return do_open(AT_FDCWD, path, flags, 0);
}
