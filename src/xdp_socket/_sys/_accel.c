/*
 * xdp_socket._sys._accel: the optional compiled accelerator for the innermost
 * per-batch ring loops. The pure-Python implementation in xdp_socket._ring is
 * complete and is the fallback; this module only makes the same steps cheaper
 * (one C call instead of several numpy calls), with the same checks.
 *
 * Rules this file keeps:
 *
 * - No pointer outlives a call. A Ring holds a reference to a buffer object
 *   (the memoryview over the ring mapping) and plain offsets; every call takes
 *   a buffer export for its own duration and releases it before returning, so
 *   the Python side can always release its views and close the mappings. A
 *   released memoryview refuses the export (ValueError): a call after close()
 *   can never touch unmapped memory.
 * - Every index into a buffer is bounds-checked against the length of the
 *   buffer we were given (ring slots are masked by the power-of-two entries,
 *   validated against the buffer length when the Ring is made; UMEM and pool
 *   accesses are checked per element). Values the kernel wrote (descriptor
 *   addresses and lengths, completion addresses, its index words) are
 *   untrusted: the same checks as the Python path raise RingCorruptedError
 *   (reported as a negative status, the Python caller raises).
 * - Memory ordering as in libxdp (xsk.h / libbpf_util.h): the other side's
 *   index is read with an acquire load before its slots are read; our index is
 *   published with a release store after our slot writes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <poll.h>
#include <time.h>
#include <sys/socket.h>

#define XDP_RING_NEED_WAKEUP 1 /* if_xdp.h */

/* status codes returned to _ring.py (it owns the error messages) */
#define ST_CORRUPT -1 /* a kernel-written value cannot be right */
#define ST_SHORT -2   /* a packet too short for the operation */
#define ST_OVERFLOW -3 /* more frames for a pool than it has room for */
#define ST_FALLBACK -4 /* not the common case: the Python path does it (nothing done) */

typedef struct {
    PyObject_HEAD
    PyObject *buf;      /* the object to export (a memoryview over the mapping) */
    Py_ssize_t prod_off, cons_off, flags_off, desc_off;
    Py_ssize_t end;     /* bytes the layout needs: checked on every export */
    uint32_t entries, mask;
    int esize;          /* 8: Fill/Completion (u64 addr), 16: RX/TX (struct xdp_desc) */
    /* The ring's cached indices (see _ring.ProducerRing / ConsumerRing): the
     * Python ring classes derive from this type when it is built, so these
     * are their ``cached_prod`` / ``cached_cons`` attributes, read and written
     * by Python as ints and updated in place by the *_fast calls below. */
    uint32_t cached_prod, cached_cons;
    /* TX rings: frames reserved (seek) and not yet committed, the bound of
     * tx_peek's index; TxPath keeps it in step (its ``reserved``). */
    uint32_t reserved;
} Ring;

static PyTypeObject RingType;

static int ring_init(Ring *self, PyObject *args, PyObject *kw)
{
    PyObject *buf;
    Py_ssize_t prod, cons, flags, desc, entries;
    int esize;
    static char *names[] = {"buf", "producer_off", "consumer_off", "flags_off", "desc_off",
                            "entries", "esize", NULL};

    if (!PyArg_ParseTupleAndKeywords(args, kw, "Onnnnni", names, &buf, &prod, &cons, &flags,
                                     &desc, &entries, &esize))
        return -1;
    if (entries <= 0 || entries > 0x80000000LL || (entries & (entries - 1))) {
        PyErr_SetString(PyExc_ValueError, "ring entries must be a power of two");
        return -1;
    }
    if (esize != 8 && esize != 16) {
        PyErr_SetString(PyExc_ValueError, "esize must be 8 or 16");
        return -1;
    }
    if (prod < 0 || cons < 0 || flags < 0 || desc < 0 || (prod | cons | flags | desc) & 3
        || desc & 7) {
        PyErr_SetString(PyExc_ValueError, "ring offsets must be aligned and >= 0");
        return -1;
    }
    Py_ssize_t end = desc + entries * esize;
    Py_ssize_t words = (prod > cons ? prod : cons);
    words = (words > flags ? words : flags) + 4;
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0)
        return -1;
    Py_ssize_t len = view.len;
    PyBuffer_Release(&view);
    if (len < end || len < words) {
        PyErr_SetString(PyExc_ValueError, "ring buffer is smaller than its layout");
        return -1;
    }
    Py_INCREF(buf);
    Py_XSETREF(self->buf, buf);
    self->prod_off = prod;
    self->cons_off = cons;
    self->flags_off = flags;
    self->desc_off = desc;
    self->end = end > words ? end : words;
    self->entries = (uint32_t)entries;
    self->mask = (uint32_t)(entries - 1);
    self->esize = esize;
    return 0;
}

static void ring_dealloc(Ring *self)
{
    Py_XDECREF(self->buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* adopt(other): take another (initialised) Ring's buffer and layout. The
 * Python ring classes derive from Ring and do not run its __init__; a ring
 * on the accelerated path adopts its RingArea's handle so that the *_fast
 * calls can take the ring object itself (layout and cached indices). */
static PyObject *ring_adopt(Ring *self, PyObject *o)
{
    if (!PyObject_TypeCheck(o, &RingType) || ((Ring *)o)->buf == NULL) {
        PyErr_SetString(PyExc_TypeError, "adopt() needs an initialised _accel.Ring");
        return NULL;
    }
    Ring *src = (Ring *)o;
    Py_INCREF(src->buf);
    Py_XSETREF(self->buf, src->buf);
    self->prod_off = src->prod_off;
    self->cons_off = src->cons_off;
    self->flags_off = src->flags_off;
    self->desc_off = src->desc_off;
    self->end = src->end;
    self->entries = src->entries;
    self->mask = src->mask;
    self->esize = src->esize;
    Py_RETURN_NONE;
}

static PyMethodDef ring_methods[] = {
    {"adopt", (PyCFunction)ring_adopt, METH_O, "adopt(ring): use another Ring's buffer and layout"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ring_members[] = {
    {"cached_prod", T_UINT, offsetof(Ring, cached_prod), 0, "cached producer index (u32)"},
    {"cached_cons", T_UINT, offsetof(Ring, cached_cons), 0, "cached consumer index (u32)"},
    {"reserved", T_UINT, offsetof(Ring, reserved), 0, "TX: frames reserved, not committed"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "xdp_socket._sys._accel.Ring",
    .tp_basicsize = sizeof(Ring),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "One ring's layout over a buffer (holds no export between calls) and its "
              "cached indices.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ring_init,
    .tp_dealloc = (destructor)ring_dealloc,
    .tp_methods = ring_methods,
    .tp_members = ring_members,
};

/* ---- per-call access ---------------------------------------------------- */

typedef struct {
    Py_buffer view;
    uint8_t *base;
    Ring *r;
} Map;

static int map_ring(PyObject *o, Map *m)
{
    if (!PyObject_TypeCheck(o, &RingType)) {
        PyErr_SetString(PyExc_TypeError, "expected an _accel.Ring");
        return -1;
    }
    m->r = (Ring *)o;
    if (m->r->buf == NULL) {
        PyErr_SetString(PyExc_ValueError, "Ring was not initialised");
        return -1;
    }
    if (PyObject_GetBuffer(m->r->buf, &m->view, PyBUF_WRITABLE) < 0)
        return -1; /* e.g. the memoryview was released: the socket is closed */
    if (m->view.len < m->r->end) {
        PyBuffer_Release(&m->view);
        PyErr_SetString(PyExc_ValueError, "ring buffer shrank under its layout");
        return -1;
    }
    m->base = m->view.buf;
    return 0;
}

/*
 * The two rings an entry point takes first: ``first`` a descriptor ring
 * (16-byte entries), ``second`` one of ``esize2``-byte entries (8: Fill or
 * Completion, 16: TX). On failure an exception is set ("<what> needs
 * <kinds>" for the wrong kind of ring) and nothing stays mapped.
 */
static int map_two(PyObject *first, PyObject *second, Map *m1, Map *m2, int esize2,
                   const char *what, const char *kinds)
{
    if (map_ring(first, m1) < 0)
        return -1;
    if (map_ring(second, m2) < 0) {
        PyBuffer_Release(&m1->view);
        return -1;
    }
    if (m1->r->esize != 16 || m2->r->esize != esize2) {
        PyBuffer_Release(&m2->view);
        PyBuffer_Release(&m1->view);
        PyErr_Format(PyExc_ValueError, "%s needs %s", what, kinds);
        return -1;
    }
    return 0;
}

static int map_plain(PyObject *o, Py_buffer *v)
{
    return PyObject_GetBuffer(o, v, PyBUF_WRITABLE);
}

static inline uint32_t *word(Map *m, Py_ssize_t off) { return (uint32_t *)(m->base + off); }

static inline uint32_t load_acquire(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

static inline void store_release(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/* A ring's slot array as plain locals. The loops below index through these
 * rather than through Map: Python builds extensions with
 * -fno-strict-aliasing, and Map's address escapes into PyObject_GetBuffer, so
 * every store into a slot would otherwise force the layout to be re-read
 * from memory (measured: about twice the instructions per entry). */
typedef struct {
    uint8_t *d;
    uint32_t mask;
    uint32_t esize;
} Slots;

static inline Slots slots_of(Map *m)
{
    Slots s = {m->base + m->r->desc_off, m->r->mask, (uint32_t)m->r->esize};
    return s;
}

static inline uint64_t *s_addr(Slots s, uint32_t i)
{
    return (uint64_t *)(s.d + (Py_ssize_t)(i & s.mask) * s.esize);
}

static inline uint32_t *s_len(Slots s, uint32_t i)
{
    return (uint32_t *)(s.d + (Py_ssize_t)(i & s.mask) * 16 + 8);
}

static inline uint32_t *s_options(Slots s, uint32_t i)
{
    return (uint32_t *)(s.d + (Py_ssize_t)(i & s.mask) * 16 + 12);
}

/* argument helpers: free-running indices are u32, counts small and >= 0 */
static int arg_u32(PyObject *o, uint32_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLongMask(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int arg_u64(PyObject *o, uint64_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLongMask(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static int arg_count(PyObject *o, Py_ssize_t *out, Py_ssize_t limit)
{
    Py_ssize_t v = PyLong_AsSsize_t(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || v > limit) {
        PyErr_Format(PyExc_ValueError, "count %zd out of range 0..%zd", v, limit);
        return -1;
    }
    *out = v;
    return 0;
}

static int check_nargs(Py_ssize_t nargs, Py_ssize_t want, const char *name)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
        return -1;
    }
    return 0;
}

/* A pool is a numpy uint64 array whose length is a power of two. */
static int pool_view(PyObject *o, Py_buffer *v, uint64_t **p, uint64_t *mask)
{
    if (map_plain(o, v) < 0)
        return -1;
    Py_ssize_t n = v->len / 8;
    if (n <= 0 || (n & (n - 1)) || ((uintptr_t)v->buf & 7)) {
        PyBuffer_Release(v);
        PyErr_SetString(PyExc_ValueError, "a pool must be an aligned power-of-two u64 array");
        return -1;
    }
    *p = v->buf;
    *mask = (uint64_t)n - 1;
    return 0;
}

/* ---- the loops ---------------------------------------------------------- */

/*
 * pool_to_ring(pool, pool_start, ring, ring_start, n, clear_len)
 * Copy n frame addresses from a circular pool into ring slots from ring_start
 * (Fill: the address; TX: the descriptor's address, and with clear_len its
 * length set to 0, "not written"). The caller checked there is room and that
 * the pool holds n; n <= ring entries.
 */
static PyObject *pool_to_ring(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Py_buffer pv;
    Map m;
    uint64_t *pool, pmask, pstart;
    uint32_t rstart;
    Py_ssize_t n;
    int clear;

    if (check_nargs(nargs, 6, "pool_to_ring") || arg_u64(a[1], &pstart)
        || arg_u32(a[3], &rstart) || (clear = PyObject_IsTrue(a[5])) < 0)
        return NULL;
    if (map_ring(a[2], &m) < 0)
        return NULL;
    if (arg_count(a[4], &n, m.r->entries) < 0 || pool_view(a[0], &pv, &pool, &pmask) < 0) {
        PyBuffer_Release(&m.view);
        return NULL;
    }
    if ((uint64_t)n > pmask + 1) {
        PyErr_SetString(PyExc_ValueError, "more addresses than the pool holds");
        n = -1;
    }
    Slots sl = slots_of(&m);
    if (clear && sl.esize == 16) {
        for (Py_ssize_t i = 0; i < n; i++) {
            *s_addr(sl, rstart + (uint32_t)i) = pool[(pstart + (uint64_t)i) & pmask];
            *s_len(sl, rstart + (uint32_t)i) = 0;
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++)
            *s_addr(sl, rstart + (uint32_t)i) = pool[(pstart + (uint64_t)i) & pmask];
    }
    PyBuffer_Release(&pv);
    PyBuffer_Release(&m.view);
    if (n < 0)
        return NULL;
    Py_RETURN_NONE;
}

/*
 * ring_to_pool(ring, ring_start, n, pool, pool_start, and_mask, limit) -> n | ST_CORRUPT
 * Copy n addresses (ANDed with and_mask) from ring slots into a circular pool.
 * Every address must be below ``limit`` (the UMEM size): one that is not
 * means the kernel's value is corrupt, and nothing counts as moved (the
 * caller only advances its indices on success).
 */
static PyObject *ring_to_pool(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Py_buffer pv;
    Map m;
    uint64_t *pool, pmask, pstart, and_mask, limit;
    uint32_t rstart;
    Py_ssize_t n;
    long status;

    if (check_nargs(nargs, 7, "ring_to_pool") || arg_u32(a[1], &rstart)
        || arg_u64(a[4], &pstart) || arg_u64(a[5], &and_mask) || arg_u64(a[6], &limit))
        return NULL;
    if (map_ring(a[0], &m) < 0)
        return NULL;
    if (arg_count(a[2], &n, m.r->entries) < 0 || pool_view(a[3], &pv, &pool, &pmask) < 0) {
        PyBuffer_Release(&m.view);
        return NULL;
    }
    status = (long)n;
    if ((uint64_t)n > pmask + 1) {
        status = ST_CORRUPT;
    } else {
        Slots sl = slots_of(&m);
        for (Py_ssize_t i = 0; i < n; i++) {
            uint64_t addr = *s_addr(sl, rstart + (uint32_t)i);
            if (addr >= limit) {
                status = ST_CORRUPT;
                break;
            }
            pool[(pstart + (uint64_t)i) & pmask] = addr & and_mask;
        }
    }
    PyBuffer_Release(&pv);
    PyBuffer_Release(&m.view);
    return PyLong_FromLong(status);
}

/*
 * comp_route(comp, start, n, and_mask, limit, rx_limit, own, own_start, own_room,
 *            peer, peer_start, peer_room) -> (n_own, n_peer) | ST_CORRUPT | ST_OVERFLOW
 * Completions that mix our own TX frames and forwarded RX frames (addresses
 * below rx_limit): each goes to the pool of the side that owns it, in order.
 * More for a pool than its room (free slots) means a frame came back twice.
 */
static PyObject *comp_route(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Py_buffer ov, pv;
    Map m;
    uint64_t *own, *peer, omask, pmask, ostart, pstart, and_mask, limit, rx_limit;
    uint64_t oroom, proom;
    uint32_t start;
    Py_ssize_t n, n_own = 0, n_peer = 0;
    int bad = 0;

    if (check_nargs(nargs, 12, "comp_route") || arg_u32(a[1], &start)
        || arg_u64(a[3], &and_mask) || arg_u64(a[4], &limit) || arg_u64(a[5], &rx_limit)
        || arg_u64(a[7], &ostart) || arg_u64(a[8], &oroom) || arg_u64(a[10], &pstart)
        || arg_u64(a[11], &proom))
        return NULL;
    if (map_ring(a[0], &m) < 0)
        return NULL;
    if (arg_count(a[2], &n, m.r->entries) < 0 || pool_view(a[6], &ov, &own, &omask) < 0) {
        PyBuffer_Release(&m.view);
        return NULL;
    }
    if (pool_view(a[9], &pv, &peer, &pmask) < 0) {
        PyBuffer_Release(&ov);
        PyBuffer_Release(&m.view);
        return NULL;
    }
    Slots sl = slots_of(&m);
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t addr = *s_addr(sl, start + (uint32_t)i);
        if (addr >= limit) {
            bad = ST_CORRUPT;
            break;
        }
        addr &= and_mask;
        if (addr < rx_limit) {
            if ((uint64_t)n_peer >= proom || (uint64_t)n_peer > pmask) {
                bad = ST_OVERFLOW;
                break;
            }
            peer[(pstart + (uint64_t)n_peer++) & pmask] = addr;
        } else {
            if ((uint64_t)n_own >= oroom || (uint64_t)n_own > omask) {
                bad = ST_OVERFLOW;
                break;
            }
            own[(ostart + (uint64_t)n_own++) & omask] = addr;
        }
    }
    PyBuffer_Release(&pv);
    PyBuffer_Release(&ov);
    PyBuffer_Release(&m.view);
    if (bad)
        return PyLong_FromLong(bad);
    return Py_BuildValue("(nn)", n_own, n_peer);
}

/*
 * rx_to_fill(rx, fill, rx_cons, fill_prod, n, and_mask)
 * The batch RX release: the first n RX descriptors' frames (addresses ANDed
 * to their frame start) go straight into the Fill ring, which is published
 * (release store), then the RX slots are released (release store, after the
 * reads). The caller checked the Fill ring has room and n are available.
 */
static PyObject *rx_to_fill(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map rx, fill;
    uint32_t cons, prod;
    uint64_t and_mask;
    Py_ssize_t n;

    if (check_nargs(nargs, 6, "rx_to_fill") || arg_u32(a[2], &cons) || arg_u32(a[3], &prod)
        || arg_u64(a[5], &and_mask))
        return NULL;
    if (map_two(a[0], a[1], &rx, &fill, 8, "rx_to_fill",
                "a descriptor ring and an address ring") < 0)
        return NULL;
    if (arg_count(a[4], &n, rx.r->entries < fill.r->entries ? rx.r->entries
                                                            : fill.r->entries) < 0)
        n = -1;
    if (n >= 0) {
        Slots fs = slots_of(&fill), rs = slots_of(&rx);
        for (Py_ssize_t i = 0; i < n; i++)
            *s_addr(fs, prod + (uint32_t)i) = *s_addr(rs, cons + (uint32_t)i) & and_mask;
        store_release(word(&fill, fill.r->prod_off), prod + (uint32_t)n);
        store_release(word(&rx, rx.r->cons_off), cons + (uint32_t)n);
    }
    PyBuffer_Release(&fill.view);
    PyBuffer_Release(&rx.view);
    if (n < 0)
        return NULL;
    Py_RETURN_NONE;
}

/*
 * forward(rx, tx, rx_cons, tx_prod, n)
 * Move n descriptors from the RX ring to the TX ring as they are (address
 * with the kernel's headroom offset, length, options), publish the TX
 * producer, then release the RX slots. The caller checked room and count.
 * (The kernel validates TX descriptors itself, as in the Python path.)
 */
static PyObject *forward(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map rx, tx;
    uint32_t cons, prod;
    Py_ssize_t n;

    if (check_nargs(nargs, 5, "forward") || arg_u32(a[2], &cons) || arg_u32(a[3], &prod))
        return NULL;
    if (map_two(a[0], a[1], &rx, &tx, 16, "forward", "two descriptor rings") < 0)
        return NULL;
    if (arg_count(a[4], &n, rx.r->entries < tx.r->entries ? rx.r->entries
                                                          : tx.r->entries) < 0)
        n = -1;
    if (n >= 0) {
        Slots ts = slots_of(&tx), rs = slots_of(&rx);
        for (Py_ssize_t i = 0; i < n; i++) {
            /* the whole 16-byte descriptor: address, length, options */
            memcpy(s_addr(ts, prod + (uint32_t)i), s_addr(rs, cons + (uint32_t)i), 16);
        }
        store_release(word(&tx, tx.r->prod_off), prod + (uint32_t)n);
        store_release(word(&rx, rx.r->cons_off), cons + (uint32_t)n);
    }
    PyBuffer_Release(&tx.view);
    PyBuffer_Release(&rx.view);
    if (n < 0)
        return NULL;
    Py_RETURN_NONE;
}

/*
 * swap_macs(rx, start, n, umem, frame_size) -> 0 | ST_CORRUPT | ST_SHORT
 * Swap destination and source MAC of the n packets from RX slot ``start``, in
 * the UMEM. Checks first, writes after: a descriptor outside the UMEM or
 * longer than a frame is corrupt (as RxPath.taken_descs), a packet shorter
 * than 12 bytes is refused; either way nothing is written.
 */
static PyObject *swap_macs(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map rx;
    Py_buffer uv;
    uint32_t start;
    uint64_t frame_size;
    Py_ssize_t n;
    long status = 0;

    if (check_nargs(nargs, 5, "swap_macs") || arg_u32(a[1], &start) || arg_u64(a[4], &frame_size))
        return NULL;
    if (map_ring(a[0], &rx) < 0)
        return NULL;
    if (rx.r->esize != 16 || arg_count(a[2], &n, rx.r->entries) < 0
        || map_plain(a[3], &uv) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "swap_macs needs a descriptor ring");
        PyBuffer_Release(&rx.view);
        return NULL;
    }
    uint64_t umem_len = (uint64_t)uv.len;
    uint8_t *umem = uv.buf;
    Slots rs = slots_of(&rx);
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t addr = *s_addr(rs, start + (uint32_t)i);
        uint32_t len = *s_len(rs, start + (uint32_t)i);
        if (addr >= umem_len || len > frame_size || umem_len - addr < 12) {
            status = ST_CORRUPT;
            break;
        }
        if (len < 12 && status == 0)
            status = ST_SHORT; /* keep looking: corruption wins */
    }
    for (Py_ssize_t i = 0; status == 0 && i < n; i++) {
        uint8_t *p = umem + *s_addr(rs, start + (uint32_t)i);
        uint8_t t[6];
        memcpy(t, p, 6);
        memmove(p, p + 6, 6);
        memcpy(p + 6, t, 6);
    }
    PyBuffer_Release(&uv);
    PyBuffer_Release(&rx.view);
    return PyLong_FromLong(status);
}

/*
 * set_lens(tx, start, n, length)
 * Set the length of n TX descriptors from ``start`` (the caller validated it).
 */
static PyObject *set_lens(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map tx;
    uint32_t start, length;
    Py_ssize_t n;

    if (check_nargs(nargs, 4, "set_lens") || arg_u32(a[1], &start) || arg_u32(a[3], &length))
        return NULL;
    if (map_ring(a[0], &tx) < 0)
        return NULL;
    if (tx.r->esize != 16 || arg_count(a[2], &n, tx.r->entries) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "set_lens needs a descriptor ring");
        PyBuffer_Release(&tx.view);
        return NULL;
    }
    Slots ts = slots_of(&tx);
    for (Py_ssize_t i = 0; i < n; i++)
        *s_len(ts, start + (uint32_t)i) = length;
    PyBuffer_Release(&tx.view);
    Py_RETURN_NONE;
}

/* The rows argument of write_rows and write_submit: at least n rows of at
 * most a frame, each row's bytes adjacent. 0 (sv held) or -1 (error set). */
static int get_rows(PyObject *o, Py_ssize_t n, uint64_t frame_size, Py_buffer *sv,
                    const char *who)
{
    if (PyObject_GetBuffer(o, sv, PyBUF_RECORDS_RO) < 0)
        return -1;
    if (sv->ndim != 2 || sv->itemsize != 1 || sv->shape[0] < n
        || (sv->shape[1] > 1 && sv->strides[1] != 1) || (uint64_t)sv->shape[1] > frame_size) {
        PyBuffer_Release(sv);
        PyErr_Format(PyExc_ValueError,
                     "%s needs n rows of at most a frame, bytes adjacent in a row", who);
        return -1;
    }
    return 0;
}

/* Whether the addresses in TX slots start..start+n-1 each lie in the UMEM
 * with ``width`` bytes inside their own frame (the ring is shared memory:
 * checked before anything is written). */
static int rows_fit(Slots ts, uint32_t start, Py_ssize_t n, uint64_t umem_len, uint64_t width,
                    uint64_t frame_size)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t addr = *s_addr(ts, start + (uint32_t)i);
        if (addr >= umem_len || umem_len - addr < width
            || (addr & (frame_size - 1)) + width > frame_size)
            return 0;
    }
    return 1;
}

/*
 * write_rows(tx, start, n, umem, rows, frame_size) -> 0 or ST_CORRUPT
 * Copy row i of ``rows`` (a 2-D uint8 array whose rows may be strided, e.g.
 * records in a pcap chunk) into the frame whose address is in TX slot
 * start+i, for i < n: what TxBatch.write_array does with a numpy fancy
 * assignment, without the index arrays and numpy's buffered iteration (a
 * tenth of a replay's user time). The addresses are ours (reserve put them
 * there) but the ring is shared memory: each is checked to lie in the UMEM
 * with the whole row inside its own frame before anything is written.
 */
static PyObject *write_rows(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map tx;
    Py_buffer uv, sv;
    uint32_t start;
    uint64_t frame_size;
    Py_ssize_t n;
    long status = 0;

    if (check_nargs(nargs, 6, "write_rows") || arg_u32(a[1], &start)
        || arg_u64(a[5], &frame_size))
        return NULL;
    if (frame_size == 0 || (frame_size & (frame_size - 1))) {
        PyErr_SetString(PyExc_ValueError, "frame_size must be a power of two");
        return NULL;
    }
    if (map_ring(a[0], &tx) < 0)
        return NULL;
    if (tx.r->esize != 16 || arg_count(a[2], &n, tx.r->entries) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "write_rows needs a descriptor ring");
        PyBuffer_Release(&tx.view);
        return NULL;
    }
    if (map_plain(a[3], &uv) < 0) {
        PyBuffer_Release(&tx.view);
        return NULL;
    }
    if (get_rows(a[4], n, frame_size, &sv, "write_rows") < 0) {
        PyBuffer_Release(&uv);
        PyBuffer_Release(&tx.view);
        return NULL;
    }
    uint64_t width = (uint64_t)sv.shape[1];
    Slots ts = slots_of(&tx);
    if (!rows_fit(ts, start, n, (uint64_t)uv.len, width, frame_size))
        status = ST_CORRUPT;
    const uint8_t *src = sv.buf;
    uint8_t *umem = uv.buf;
    for (Py_ssize_t i = 0; status == 0 && i < n; i++)
        /* (memmove: the rows may be views into the UMEM, even into the very
         * frames they go to, as numpy's copy allows) */
        memmove(umem + *s_addr(ts, start + (uint32_t)i), src + i * sv.strides[0], width);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&uv);
    PyBuffer_Release(&tx.view);
    return PyLong_FromLong(status);
}

/*
 * pcap_scan(buf, pos, max_packets, swap, max_caplen, hdr, offs[, ifaces])
 *     -> (k, end, shortest, longest)
 * Walk the records of ``buf`` from byte ``pos``: for each whole record,
 * while fewer than ``max_packets``, write its header words (byte-swapped
 * when ``swap``) to row k of ``hdr`` (a C-contiguous uint32 array) and the
 * offset of its packet bytes to ``offs[k]`` (int64). ``end`` is the offset
 * after the last record taken; shortest/longest are its captured lengths'
 * extremes. The offsets depend on each other, so numpy can only do this one
 * record per call; here it is one call per batch whatever the lengths.
 *
 * Without ``ifaces``: classic pcap, 16-byte record headers, ``hdr`` rows
 * (sec, frac, caplen, origlen). Stops before an incomplete record or one
 * whose captured length exceeds ``max_caplen``.
 *
 * With ``ifaces`` (the interfaces the current section has defined so far):
 * pcapng Enhanced Packet Blocks, ``hdr`` rows (if_id, ts_high, ts_low,
 * caplen, origlen). Stops before any other block type and before an EPB
 * that is incomplete in ``buf`` or that the block parser would refuse (a
 * length below 32, not a multiple of 4, above ``max_caplen`` + 1 MiB, a
 * trailing length that differs, packet bytes beyond the block, an interface
 * not defined): the caller hands that block to its block parser, which
 * reports it with the same message whichever path met it first.
 */
static inline uint32_t bswap_if(uint32_t v, int swap) { return swap ? __builtin_bswap32(v) : v; }

static Py_ssize_t scan_pcap(const uint8_t *b, Py_ssize_t len, Py_ssize_t *pos, Py_ssize_t maxp,
                            int swap, uint32_t max_caplen, uint32_t *h, int64_t *o,
                            uint32_t *lo, uint32_t *hi)
{
    Py_ssize_t k = 0, p = *pos;
    while (k < maxp && p <= len - 16) {
        uint32_t w[4];
        memcpy(w, b + p, 16); /* unaligned in the file */
        for (int j = 0; j < 4; j++)
            w[j] = bswap_if(w[j], swap);
        if (w[2] > max_caplen || (Py_ssize_t)w[2] > len - p - 16)
            break;
        memcpy(h + 4 * k, w, 16);
        o[k] = p + 16;
        *lo = w[2] < *lo ? w[2] : *lo;
        *hi = w[2] > *hi ? w[2] : *hi;
        p += 16 + (Py_ssize_t)w[2];
        k++;
    }
    *pos = p;
    return k;
}

#define EPB_TYPE 6u
#define EPB_MIN 32u /* header 8, five fields 20, trailing length 4 */

static Py_ssize_t scan_pcapng(const uint8_t *b, Py_ssize_t len, Py_ssize_t *pos,
                              Py_ssize_t maxp, int swap, uint32_t max_caplen, uint32_t ifaces,
                              uint32_t *h, int64_t *o, uint32_t *lo, uint32_t *hi)
{
    /* the block parser's limit on any block: a record's limit and 1 MiB */
    uint64_t max_block = (uint64_t)max_caplen + 1024 * 1024;
    Py_ssize_t k = 0, p = *pos;
    while (k < maxp && p <= len - (Py_ssize_t)EPB_MIN) {
        uint32_t w[7], trailer;
        memcpy(w, b + p, 28); /* type, total, if_id, ts_hi, ts_lo, caplen, origlen */
        for (int j = 0; j < 7; j++)
            w[j] = bswap_if(w[j], swap);
        uint32_t total = w[1];
        if (w[0] != EPB_TYPE || total < EPB_MIN || total % 4 || total > max_block
            || (Py_ssize_t)total > len - p)
            break;
        memcpy(&trailer, b + p + total - 4, 4);
        if (bswap_if(trailer, swap) != total || w[5] > total - EPB_MIN || w[2] >= ifaces)
            break;
        memcpy(h + 5 * k, w + 2, 20);
        o[k] = p + 28;
        *lo = w[5] < *lo ? w[5] : *lo;
        *hi = w[5] > *hi ? w[5] : *hi;
        p += total;
        k++;
    }
    *pos = p;
    return k;
}

static PyObject *pcap_scan(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Py_buffer bv, hv, ov;
    Py_ssize_t pos, maxp;
    int swap;
    uint32_t max_caplen, ifaces = 0;

    if (nargs != 8 && check_nargs(nargs, 7, "pcap_scan"))
        return NULL;
    int ng = nargs == 8;
    if (arg_count(a[1], &pos, PY_SSIZE_T_MAX) || arg_count(a[2], &maxp, PY_SSIZE_T_MAX)
        || (swap = PyObject_IsTrue(a[3])) < 0 || arg_u32(a[4], &max_caplen)
        || (ng && arg_u32(a[7], &ifaces)))
        return NULL;
    if (PyObject_GetBuffer(a[0], &bv, PyBUF_SIMPLE) < 0)
        return NULL;
    if (map_plain(a[5], &hv) < 0) {
        PyBuffer_Release(&bv);
        return NULL;
    }
    if (map_plain(a[6], &ov) < 0) {
        PyBuffer_Release(&hv);
        PyBuffer_Release(&bv);
        return NULL;
    }
    Py_ssize_t row = ng ? 20 : 16;
    Py_ssize_t room = hv.len / row < ov.len / 8 ? hv.len / row : ov.len / 8;
    if (((uintptr_t)hv.buf & 3) || ((uintptr_t)ov.buf & 7) || maxp > room) {
        PyBuffer_Release(&ov);
        PyBuffer_Release(&hv);
        PyBuffer_Release(&bv);
        PyErr_SetString(PyExc_ValueError, "pcap_scan: output arrays too small or misaligned");
        return NULL;
    }
    uint32_t lo = UINT32_MAX, hi = 0;
    Py_ssize_t k = ng ? scan_pcapng(bv.buf, bv.len, &pos, maxp, swap, max_caplen, ifaces, hv.buf,
                                    ov.buf, &lo, &hi)
                      : scan_pcap(bv.buf, bv.len, &pos, maxp, swap, max_caplen, hv.buf, ov.buf,
                                  &lo, &hi);
    PyBuffer_Release(&ov);
    PyBuffer_Release(&hv);
    PyBuffer_Release(&bv);
    return Py_BuildValue("(nnII)", k, pos, k ? lo : 0, hi);
}

/*
 * gather_rows(buf, offs, lens, n, out)
 * Copy ``lens[i]`` bytes from ``buf`` at ``offs[i]`` into row i of ``out``
 * (a C-contiguous uint8 (>= n, W) array; the rest of the row is left as it
 * is), for i < n: the packets of a pcap_scan batch of mixed lengths, one
 * call instead of a numpy copy per packet. Every range is checked.
 */
static PyObject *gather_rows(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Py_buffer bv, ov, lv, dv;
    Py_ssize_t n;

    if (check_nargs(nargs, 5, "gather_rows") || arg_count(a[3], &n, PY_SSIZE_T_MAX))
        return NULL;
    if (PyObject_GetBuffer(a[0], &bv, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(a[1], &ov, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&bv);
        return NULL;
    }
    if (PyObject_GetBuffer(a[2], &lv, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&ov);
        PyBuffer_Release(&bv);
        return NULL;
    }
    if (PyObject_GetBuffer(a[4], &dv, PyBUF_WRITABLE | PyBUF_ND) < 0) {
        PyBuffer_Release(&lv);
        PyBuffer_Release(&ov);
        PyBuffer_Release(&bv);
        return NULL;
    }
    int ok = dv.ndim == 2 && dv.itemsize == 1 && dv.shape[0] >= n && ov.len / 8 >= n
             && lv.len / 4 >= n && !((uintptr_t)ov.buf & 7) && !((uintptr_t)lv.buf & 3);
    const int64_t *offs = ov.buf;
    const uint32_t *lens = lv.buf;
    Py_ssize_t width = ok ? dv.shape[1] : 0;
    for (Py_ssize_t i = 0; ok && i < n; i++)
        ok = offs[i] >= 0 && offs[i] <= bv.len && (Py_ssize_t)lens[i] <= bv.len - offs[i]
             && (Py_ssize_t)lens[i] <= width;
    for (Py_ssize_t i = 0; ok && i < n; i++)
        memcpy((uint8_t *)dv.buf + i * width, (const uint8_t *)bv.buf + offs[i], lens[i]);
    PyBuffer_Release(&dv);
    PyBuffer_Release(&lv);
    PyBuffer_Release(&ov);
    PyBuffer_Release(&bv);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "gather_rows: a range outside the buffer or the row");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- the per-packet API's peek_at ----------------------------------------
 *
 * RxPath.peek_at / TxPath.peek_at in one call each (bound with
 * functools.partial to the ring and the UMEM view, so no path object is
 * held: no reference cycle). The answer is a slice of the UMEM memoryview,
 * made by the memoryview itself, so it keeps the mapping alive as a Python
 * slice does and is clipped to the UMEM the same way.
 */
static PyObject *umem_slice(PyObject *umem, uint64_t addr, uint64_t len)
{
    Py_ssize_t size = PyObject_Length(umem);
    if (size < 0)
        return NULL;
    uint64_t lo = addr < (uint64_t)size ? addr : (uint64_t)size;
    uint64_t hi = len <= (uint64_t)size - lo ? lo + len : (uint64_t)size;
    return PySequence_GetSlice(umem, (Py_ssize_t)lo, (Py_ssize_t)hi);
}

/* rx_peek(rx, umem, i) -> memoryview of the i-th available packet */
static PyObject *rx_peek(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map m;
    if (check_nargs(nargs, 3, "rx_peek"))
        return NULL;
    Py_ssize_t i = PyLong_AsSsize_t(a[2]);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (map_ring(a[0], &m) < 0)
        return NULL;
    Ring *r = m.r;
    uint32_t avail = r->cached_prod - r->cached_cons;
    if (r->esize != 16 || i < 0 || (uint64_t)i >= avail) {
        PyBuffer_Release(&m.view);
        if (r->esize != 16)
            PyErr_SetString(PyExc_ValueError, "rx_peek needs a descriptor ring");
        else
            PyErr_Format(PyExc_IndexError, "packet index %zd out of range: %u packet(s) "
                         "available (call seek_n)", i, avail);
        return NULL;
    }
    Slots rs = slots_of(&m);
    uint32_t slot = r->cached_cons + (uint32_t)i;
    uint64_t addr = *s_addr(rs, slot);
    uint32_t len = *s_len(rs, slot);
    PyBuffer_Release(&m.view);
    return umem_slice(a[1], addr, len);
}

/* tx_peek(tx, umem, frame_size, i, length) -> memoryview of the i-th
 * reserved frame's first ``length`` bytes; sets its descriptor's length */
static PyObject *tx_peek(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map m;
    if (check_nargs(nargs, 5, "tx_peek"))
        return NULL;
    Py_ssize_t fs = PyLong_AsSsize_t(a[2]);
    if (fs == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t i = PyLong_AsSsize_t(a[3]);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t length = PyLong_AsSsize_t(a[4]);
    if (length == -1 && PyErr_Occurred())
        return NULL;
    if (length <= 0 || length > fs) {
        PyErr_Format(PyExc_ValueError, "length must be 1..%zd (the frame size), got %zd", fs,
                     length);
        return NULL;
    }
    if (map_ring(a[0], &m) < 0)
        return NULL;
    Ring *r = m.r;
    if (r->esize != 16 || i < 0 || (uint64_t)i >= r->reserved) {
        PyBuffer_Release(&m.view);
        if (r->esize != 16)
            PyErr_SetString(PyExc_ValueError, "tx_peek needs a descriptor ring");
        else
            PyErr_Format(PyExc_IndexError, "frame index %zd out of range: %u frame(s) "
                         "available (call seek_n)", i, r->reserved);
        return NULL;
    }
    Slots ts = slots_of(&m);
    uint32_t slot = r->cached_prod + (uint32_t)i;
    uint64_t addr = *s_addr(ts, slot);
    *s_len(ts, slot) = (uint32_t)length;
    PyBuffer_Release(&m.view);
    return umem_slice(a[1], addr, (uint64_t)length);
}

/*
 * drive_tx(fd, tx, always) -> (pending, status)
 * Kick the TX ring (zero-length sendto, MSG_DONTWAIT) until the kernel has
 * consumed everything up to our producer word. (The word, not a value passed
 * in: with a bidirectional socket the RX thread's forward may publish more
 * while the GIL is released here.) Copy mode sends at most a
 * budget of frames per kick and says EAGAIN while more are queued, so one
 * kick per budget is needed; a kick is only made while entries are pending
 * and (unless ``always``) the ring asks for a wakeup, so none is wasted.
 * status: 0 done (or the kernel polls the ring itself), -1 a kick made no
 * progress (the caller may reclaim completions and call again), > 0 an errno
 * other than EAGAIN/EBUSY/ENOBUFS. The consumer word is read with acquire
 * semantics and checked: more pending than the ring holds is ST_CORRUPT
 * (status -3). The GIL is released during sendto (the export we hold keeps
 * the mapping alive even if another thread closes the socket meanwhile).
 */
static int kick_loop(Map *tx, int fd, int always, uint32_t *pending_out);

static PyObject *drive_tx(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map tx;
    int fd, always, status = 0;

    if (check_nargs(nargs, 3, "drive_tx") || (always = PyObject_IsTrue(a[2])) < 0)
        return NULL;
    fd = PyLong_AsLong(a[0]) ;
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (map_ring(a[1], &tx) < 0)
        return NULL;
    uint32_t pending = 0;
    status = kick_loop(&tx, fd, always, &pending);
    PyBuffer_Release(&tx.view);
    return Py_BuildValue("(Ii)", pending, status);
}

/* ---- whole steps on the Python ring objects ------------------------------
 *
 * These take the ring objects of xdp_socket._ring themselves (instances of
 * subclasses of Ring that adopted their area's layout) and read and update
 * their cached indices in place, so that one call does what ConsumerRing.
 * available / ProducerRing.free_entries / RxPath.release_batch / TxPath.
 * forward do in Python for the common case. Every kernel index they load is
 * checked as the Python code checks it; a bad one is ST_CORRUPT, and then
 * nothing is written and no cached index moves. ST_FALLBACK means "not the
 * common case": nothing was done, the Python path takes over.
 */

/* A count for the *_fast calls: a negative one is not the usual case
 * (ST_FALLBACK: the Python path reports it in its own words). */
static int arg_n(PyObject *o, Py_ssize_t *out)
{
    Py_ssize_t v = PyLong_AsSsize_t(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* ConsumerRing.available(wanted): entries ready, re-reading the kernel's
 * producer (acquire) only when the cache has fewer than ``wanted``. */
static int cons_avail(Map *m, uint32_t wanted, uint32_t *out)
{
    Ring *r = m->r;
    uint32_t n = r->cached_prod - r->cached_cons;
    if (n < wanted) {
        uint32_t prod = load_acquire(word(m, r->prod_off));
        n = prod - r->cached_cons;
        if (n > r->entries)
            return ST_CORRUPT; /* producer too far ahead: not cached */
        r->cached_prod = prod;
    }
    *out = n;
    return 0;
}

/* ProducerRing.free_entries(wanted): free slots, re-reading the kernel's
 * consumer (acquire) only when the cache has fewer than ``wanted``. */
static int prod_free(Map *m, uint32_t wanted, uint32_t *out)
{
    Ring *r = m->r;
    uint32_t n = r->cached_cons - r->cached_prod;
    if (n < wanted) {
        uint32_t cons = load_acquire(word(m, r->cons_off)) + r->entries;
        n = cons - r->cached_prod;
        if (n > r->entries)
            return ST_CORRUPT; /* consumer ahead of our producer: not cached */
        r->cached_cons = cons;
    }
    *out = n;
    return 0;
}

/*
 * peek_fast(ring, n) -> min(n, available) | ST_CORRUPT
 * ConsumerRing.available(n) for a consumer ring (RX or Completion), capped
 * at n: what RxPath.seek needs in one call. ST_FALLBACK for n < 0.
 */
static PyObject *peek_fast(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map m;
    Py_ssize_t n;
    uint32_t avail = 0;

    if (check_nargs(nargs, 2, "peek_fast") || map_ring(a[0], &m) < 0)
        return NULL;
    if (arg_n(a[1], &n) < 0) {
        PyBuffer_Release(&m.view);
        return NULL;
    }
    if (n < 0) {
        PyBuffer_Release(&m.view);
        return PyLong_FromLong(ST_FALLBACK);
    }
    int st = cons_avail(&m, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n, &avail);
    PyBuffer_Release(&m.view);
    if (st < 0)
        return PyLong_FromLong(st);
    return PyLong_FromSsize_t((Py_ssize_t)avail < n ? (Py_ssize_t)avail : n);
}

/* The usual release of n (>= 2) available RX entries, shared by release_fast
 * and release_step: their frames (addresses ANDed to frame starts) go into
 * the Fill ring, which is published, then the RX slots are released; both
 * rings' cached indices move. ST_FALLBACK, nothing done: n < 2, more than are
 * available, or no room for all n; ST_CORRUPT, nothing done: a corrupt Fill
 * consumer. */
static int rx_release_step(Map *rx, Map *fill, Py_ssize_t n, uint64_t and_mask)
{
    Ring *rr = rx->r, *fr = fill->r;
    uint32_t room = 0;
    if (n < 2 || (uint64_t)n > (uint32_t)(rr->cached_prod - rr->cached_cons))
        return ST_FALLBACK;
    int st = prod_free(fill, (uint32_t)n, &room);
    if (st)
        return st;
    if (room < (uint32_t)n)
        return ST_FALLBACK;
    uint32_t cons = rr->cached_cons, prod = fr->cached_prod;
    Slots fs = slots_of(fill), rs = slots_of(rx);
    for (Py_ssize_t i = 0; i < n; i++)
        *s_addr(fs, prod + (uint32_t)i) = *s_addr(rs, cons + (uint32_t)i) & and_mask;
    store_release(word(fill, fr->prod_off), prod + (uint32_t)n);
    store_release(word(rx, rr->cons_off), cons + (uint32_t)n);
    fr->cached_prod = prod + (uint32_t)n;
    rr->cached_cons = cons + (uint32_t)n;
    return 0;
}

/*
 * release_fast(rx, fill, n, and_mask) -> flags | ST_CORRUPT | ST_FALLBACK
 * RxPath.release_batch's usual case in one call: n >= 2 RX entries
 * (available) go to the Fill ring (addresses ANDed to their frame start),
 * which is published, then the RX slots are released; the cached indices of
 * both rings move. Flags: 1 the Fill ring asks for a wakeup, 2 the Fill ring
 * is at most half full (pooled frames top it up then). ST_FALLBACK: n < 2,
 * more than are available, or no room for all n in the Fill ring.
 */
static PyObject *release_fast(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map rx, fill;
    uint64_t and_mask;
    Py_ssize_t n;
    long st = 0;

    if (check_nargs(nargs, 4, "release_fast") || arg_u64(a[3], &and_mask))
        return NULL;
    if (map_two(a[0], a[1], &rx, &fill, 8, "release_fast", "an RX ring and a Fill ring") < 0)
        return NULL;
    if (arg_n(a[2], &n) < 0)
        st = -100;
    if (st == 0) {
        Ring *fr = fill.r;
        st = rx_release_step(&rx, &fill, n, and_mask);
        if (st == 0) {
            if (load_acquire(word(&fill, fr->flags_off)) & XDP_RING_NEED_WAKEUP)
                st |= 1;
            /* flag 2: the Fill ring is at most half full now (exact: the
             * kernel's consumer is re-read when the cache says otherwise),
             * the moment RxPath tops it up from its pool of spare frames */
            uint32_t half = fr->entries / 2, free_now = 0;
            if (prod_free(&fill, half, &free_now) == 0 && free_now >= half)
                st |= 2;
        }
    }
    PyBuffer_Release(&fill.view);
    PyBuffer_Release(&rx.view);
    if (st == -100)
        return NULL;
    return PyLong_FromLong(st);
}

/*
 * forward_fast(rx, tx, n) -> k | ST_CORRUPT | ST_FALLBACK
 * TxPath.forward's move in one call: k = min(n, free TX slots) descriptors
 * go from the RX ring to the TX ring as they are, the TX producer is
 * published, then the RX slots are released; both rings' cached indices
 * move. ST_FALLBACK: n < 0 or more than are available on RX. (Only for sockets
 * without multi-buffer: a short TX ring must never cut a packet's chain.)
 */
static PyObject *forward_fast(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map rx, tx;
    Py_ssize_t n;
    long st = 0;
    uint32_t k = 0;

    if (check_nargs(nargs, 3, "forward_fast")
        || map_two(a[0], a[1], &rx, &tx, 16, "forward_fast", "two descriptor rings") < 0)
        return NULL;
    if (arg_n(a[2], &n) < 0)
        st = -100;
    if (st == 0) {
        Ring *rr = rx.r, *tr = tx.r;
        if (n < 0 || (uint64_t)n > (uint32_t)(rr->cached_prod - rr->cached_cons))
            st = ST_FALLBACK;
        else
            st = prod_free(&tx, (uint32_t)n, &k);
        if (st == 0) {
            if (k > (uint32_t)n)
                k = (uint32_t)n;
            uint32_t cons = rr->cached_cons, prod = tr->cached_prod;
            Slots ts = slots_of(&tx), rs = slots_of(&rx);
            for (uint32_t i = 0; i < k; i++) /* the whole descriptor: addr, len, options */
                memcpy(s_addr(ts, prod + i), s_addr(rs, cons + i), 16);
            if (k) {
                store_release(word(&tx, tr->prod_off), prod + k);
                store_release(word(&rx, rr->cons_off), cons + k);
                tr->cached_prod = prod + k;
                rr->cached_cons = cons + k;
            }
            st = (long)k;
        }
    }
    PyBuffer_Release(&tx.view);
    PyBuffer_Release(&rx.view);
    if (st == -100)
        return NULL;
    return PyLong_FromLong(st);
}

/* ---- TX steps on the Python path objects ---------------------------------
 *
 * reserve_fast and submit_fast take a TxPath (and its rings and pool) and do
 * the usual case of TxPath.seek / TxBatch.submit in one call. The path's
 * Python-int counters (reserved, submitted, completed, foreign_in_flight)
 * and the pools' head and tail are read and written as attributes; the
 * rings' cached indices and ``reserved`` copy are the Ring's C fields. On any
 * negative status nothing was changed (a reclaim already done stays done:
 * it is a whole step of its own) and the Python path takes over, raising the
 * error in its own words.
 */

static PyObject *s_buf, *s_head, *s_tail, *s_reserved, *s_submitted, *s_completed,
    *s_reclaim_at, *s_base_mask, *s_umem_size, *s_multi_buffer, *s_foreign, *s_rx_peer,
    *s_returns, *s_rx_limit, *s_peers, *s_tx, *s_comp, *s_rx, *s_pool, *s_fill,
    *s_received, *s_extra_returns, *s_has_returners, *s_closed;

static int get_u64(PyObject *o, PyObject *name, uint64_t *out)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    Py_DECREF(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = x;
    return 0;
}

static int set_u64(PyObject *o, PyObject *name, uint64_t v)
{
    PyObject *x = PyLong_FromUnsignedLongLong(v);
    if (x == NULL)
        return -1;
    int r = PyObject_SetAttr(o, name, x);
    Py_DECREF(x);
    return r;
}

static int get_truth(PyObject *o, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* A FramePool: its array (exported for the call) and its Python-int indices. */
typedef struct {
    PyObject *obj;
    Py_buffer v;
    uint64_t *a, mask, head, tail;
} Pool;

static int pool_open(PyObject *obj, Pool *p)
{
    PyObject *buf = PyObject_GetAttr(obj, s_buf);
    if (buf == NULL)
        return -1;
    int r = pool_view(buf, &p->v, &p->a, &p->mask);
    Py_DECREF(buf);
    if (r < 0)
        return -1;
    p->obj = obj;
    if (get_u64(obj, s_head, &p->head) < 0 || get_u64(obj, s_tail, &p->tail) < 0) {
        PyBuffer_Release(&p->v);
        return -1;
    }
    if (p->tail - p->head > p->mask + 1) {
        PyBuffer_Release(&p->v);
        PyErr_SetString(PyExc_ValueError, "frame pool indices out of step");
        return -1;
    }
    return 0;
}

/* TxPath._reclaim (with _reclaim_c) for a path without peers: every
 * completion goes to this side's pool, or forwarded RX frames (below
 * rx_limit) to the RX side's ``returns`` queue. Returns the number reclaimed,
 * ST_CORRUPT (a bad Completion producer or an address beyond the UMEM),
 * ST_OVERFLOW (a pool would overflow), -100 with a Python error set; on a
 * negative status nothing moved. */
static long tx_reclaim(PyObject *path, Map *comp, Pool *pool)
{
    uint32_t m = 0;
    if (cons_avail(comp, comp->r->entries, &m) < 0)
        return ST_CORRUPT;
    if (!m)
        return 0;
    uint64_t limit, and_mask, foreign;
    if (get_u64(path, s_umem_size, &limit) < 0 || get_u64(path, s_base_mask, &and_mask) < 0
        || get_u64(path, s_foreign, &foreign) < 0)
        return -100;
    Slots cs = slots_of(comp);
    uint32_t start = comp->r->cached_cons;
    uint64_t own = 0, theirs = 0, rx_limit = 0;
    if (foreign && get_u64(path, s_rx_limit, &rx_limit) < 0)
        return -100;
    for (uint32_t i = 0; i < m; i++) { /* check everything before moving anything */
        uint64_t addr = *s_addr(cs, start + i);
        if (addr >= limit)
            return ST_CORRUPT;
        if ((addr & and_mask) < rx_limit)
            theirs++;
    }
    own = m - theirs;
    if (own > pool->mask + 1 - (pool->tail - pool->head))
        return ST_OVERFLOW;
    Pool ret = {0};
    if (theirs) {
        PyObject *peer = PyObject_GetAttr(path, s_rx_peer);
        if (peer == NULL)
            return -100;
        PyObject *q = peer == Py_None ? NULL : PyObject_GetAttr(peer, s_returns);
        Py_DECREF(peer);
        if (q == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "forwarded frames in flight without an RX peer");
            return -100;
        }
        int r = pool_open(q, &ret);
        Py_DECREF(q); /* (the path holds it) */
        if (r < 0)
            return -100;
        if (theirs > ret.mask + 1 - (ret.tail - ret.head) || theirs > foreign) {
            PyBuffer_Release(&ret.v);
            return ST_OVERFLOW;
        }
    }
    uint64_t o = pool->tail, t = ret.tail;
    for (uint32_t i = 0; i < m; i++) {
        uint64_t addr = *s_addr(cs, start + i) & and_mask;
        if (addr < rx_limit)
            ret.a[t++ & ret.mask] = addr;
        else
            pool->a[o++ & pool->mask] = addr;
    }
    long st = 0;
    /* single producer (this side) for both queues: the new tails publish */
    if (set_u64(pool->obj, s_tail, o) < 0)
        st = -100;
    pool->tail = o;
    if (theirs) {
        if (st == 0 && (set_u64(ret.obj, s_tail, t) < 0 || set_u64(path, s_foreign,
                                                                  foreign - theirs) < 0))
            st = -100;
        PyBuffer_Release(&ret.v);
    }
    store_release(word(comp, comp->r->cons_off), start + m);
    comp->r->cached_cons = start + m;
    uint64_t completed;
    if (st == 0 && (get_u64(path, s_completed, &completed) < 0
                    || set_u64(path, s_completed, completed + m) < 0))
        st = -100;
    return st ? st : (long)m;
}

/*
 * reserve_fast(path, tx, comp, pool, n, clear_len) -> min(n, reserved) | < 0
 * TxPath.seek in one call: reclaim completions when the pool is short or
 * half the Completion ring is in flight, then move pool frames into TX
 * slots past those already reserved (with clear_len their length 0, on a
 * multi-buffer socket their options 0), updating path.reserved and the TX
 * ring's copy. Negative: ST_CORRUPT / ST_OVERFLOW / ST_FALLBACK (n < 0, a
 * path with peers needing a reclaim): the Python path redoes and reports.
 * (Not for GroupTxPath, whose Completion ring is the group's.)
 */
static PyObject *reserve_fast(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map tx, comp;
    Pool pool;
    Py_ssize_t n;
    long st = 0;
    int clear;

    if (check_nargs(nargs, 6, "reserve_fast") || arg_n(a[4], &n) < 0
        || (clear = PyObject_IsTrue(a[5])) < 0)
        return NULL;
    if (n < 0)
        return PyLong_FromLong(ST_FALLBACK);
    if (map_ring(a[1], &tx) < 0)
        return NULL;
    uint32_t reserved = tx.r->reserved;
    if ((uint64_t)reserved >= (uint64_t)n) {
        PyBuffer_Release(&tx.view);
        return PyLong_FromSsize_t(n);
    }
    if (map_ring(a[2], &comp) < 0) {
        PyBuffer_Release(&tx.view);
        return NULL;
    }
    if (tx.r->esize != 16 || comp.r->esize != 8) {
        PyBuffer_Release(&comp.view);
        PyBuffer_Release(&tx.view);
        PyErr_SetString(PyExc_ValueError, "reserve_fast needs a TX ring and a Completion ring");
        return NULL;
    }
    if (pool_open(a[3], &pool) < 0) {
        PyBuffer_Release(&comp.view);
        PyBuffer_Release(&tx.view);
        return NULL;
    }
    PyObject *path = a[0];
    uint64_t want = (uint64_t)n - reserved, submitted, completed, reclaim_at;
    if (get_u64(path, s_submitted, &submitted) < 0 || get_u64(path, s_completed, &completed) < 0
        || get_u64(path, s_reclaim_at, &reclaim_at) < 0) {
        st = -100;
        goto out;
    }
    /* (as in seek: also when many are in flight, so that the Completion
     * ring never fills while the pool still has frames) */
    if (pool.tail - pool.head < want || submitted - completed >= reclaim_at) {
        /* other sockets' RX sides forward into this ring: their completions
         * are routed by address ranges in Python (_reclaim_routed) */
        int peers = get_truth(path, s_peers);
        if (peers) {
            st = peers < 0 ? -100 : ST_FALLBACK;
            goto out;
        }
        long r = tx_reclaim(path, &comp, &pool);
        if (r < 0) {
            st = r;
            goto out;
        }
    }
    uint32_t free = 0;
    if ((st = prod_free(&tx, (uint32_t)(n > UINT32_MAX ? UINT32_MAX : n), &free)) < 0)
        goto out;
    uint64_t k = pool.tail - pool.head;
    if (want < k)
        k = want;
    if (free < reserved)
        k = 0;
    else if ((uint64_t)(free - reserved) < k)
        k = free - reserved;
    if (k) {
        int mb = get_truth(path, s_multi_buffer);
        if (mb < 0) {
            st = -100;
            goto out;
        }
        Slots ts = slots_of(&tx);
        uint32_t start = tx.r->cached_prod + reserved;
        for (uint32_t i = 0; i < (uint32_t)k; i++) {
            *s_addr(ts, start + i) = pool.a[(pool.head + i) & pool.mask];
            if (clear)
                *s_len(ts, start + i) = 0;
            if (mb)
                *s_options(ts, start + i) = 0;
        }
        reserved += (uint32_t)k;
        tx.r->reserved = reserved;
        if (set_u64(pool.obj, s_head, pool.head + k) < 0
            || set_u64(path, s_reserved, reserved) < 0) {
            st = -100;
            goto out;
        }
    }
    st = (uint64_t)reserved >= (uint64_t)n ? (long)n : (long)reserved;
out:
    PyBuffer_Release(&pool.v);
    PyBuffer_Release(&comp.view);
    PyBuffer_Release(&tx.view);
    if (st == -100)
        return NULL;
    return PyLong_FromLong(st);
}

/* The kick loop of drive_tx (see there) on a mapped TX ring; *pending gets
 * what is left. */
static int kick_loop(Map *tx, int fd, int always, uint32_t *pending_out)
{
    int status = 0;
    uint32_t *cons_w = word(tx, tx->r->cons_off), *flags_w = word(tx, tx->r->flags_off);
    uint32_t *prod_w = word(tx, tx->r->prod_off);
    uint32_t pending = load_acquire(prod_w) - load_acquire(cons_w);
    while (pending) {
        if (pending > tx->r->entries) {
            status = -3;
            break;
        }
        if (!always && !(__atomic_load_n(flags_w, __ATOMIC_ACQUIRE) & XDP_RING_NEED_WAKEUP))
            break; /* the kernel is polling the ring by itself */
        ssize_t r;
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        r = sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
        if (r < 0)
            err = errno;
        Py_END_ALLOW_THREADS
        if (r < 0 && err != EAGAIN && err != EBUSY && err != ENOBUFS && err != EINTR) {
            status = err;
            break;
        }
        uint32_t left = load_acquire(prod_w) - load_acquire(cons_w);
        if (left > tx->r->entries) {
            pending = left;
            status = -3;
            break;
        }
        if (left >= pending) {
            pending = left;
            status = -1; /* no progress: Completion ring full or driver busy */
            break;
        }
        pending = left;
    }
    *pending_out = pending;
    return status;
}

/* The accounting of n published TX frames (submitted before them):
 * the ring's cached producer and reserved count, path.reserved and
 * path.submitted. 0, or -1 with a Python error. */
static int tx_submitted(PyObject *path, Ring *r, uint32_t n, uint64_t submitted)
{
    r->cached_prod += n;
    r->reserved -= n;
    if (set_u64(path, s_reserved, r->reserved) < 0
        || set_u64(path, s_submitted, submitted + (uint64_t)n) < 0)
        return -1;
    return 0;
}

/*
 * submit_fast(path, tx, n, length, fd, always) -> status | ST_FALLBACK
 * TxPath.submit_len then (fd >= 0) XskCore.drive_tx in one call: the first
 * n reserved TX slots get ``length`` (validated by the caller), the producer
 * is published, path.reserved / path.submitted and the ring's reserved copy
 * move; then the kick loop runs. Status as drive_tx's: 0, -1 no progress,
 * -3 a corrupt TX consumer, > 0 an errno. ST_FALLBACK (-4): n is not 1..reserved
 * (nothing done).
 */
static PyObject *submit_fast(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map tx;
    Py_ssize_t n;
    uint32_t length;
    int fd, always;

    if (check_nargs(nargs, 6, "submit_fast") || arg_n(a[2], &n) < 0 || arg_u32(a[3], &length)
        || (always = PyObject_IsTrue(a[5])) < 0)
        return NULL;
    fd = (int)PyLong_AsLong(a[4]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (map_ring(a[1], &tx) < 0)
        return NULL;
    Ring *r = tx.r;
    if (r->esize != 16 || n <= 0 || (uint64_t)n > r->reserved) {
        PyBuffer_Release(&tx.view);
        if (r->esize != 16) {
            PyErr_SetString(PyExc_ValueError, "submit_fast needs a TX ring");
            return NULL;
        }
        return PyLong_FromLong(ST_FALLBACK);
    }
    PyObject *path = a[0];
    uint64_t submitted;
    if (get_u64(path, s_submitted, &submitted) < 0) {
        PyBuffer_Release(&tx.view);
        return NULL;
    }
    Slots ts = slots_of(&tx);
    uint32_t prod = r->cached_prod;
    for (uint32_t i = 0; i < (uint32_t)n; i++)
        *s_len(ts, prod + i) = length;
    store_release(word(&tx, r->prod_off), prod + (uint32_t)n);
    if (tx_submitted(path, r, (uint32_t)n, submitted) < 0) {
        PyBuffer_Release(&tx.view);
        return NULL;
    }
    int status = 0;
    uint32_t pending = 0;
    if (fd >= 0)
        status = kick_loop(&tx, fd, always, &pending);
    PyBuffer_Release(&tx.view);
    return PyLong_FromLong(status);
}

/*
 * write_submit(path, tx, n, umem, rows, frame_size, lens, fd, always)
 *   -> status | ST_FALLBACK
 * TxBatch.submit_array's usual case: TxBatch.write_array then TxBatch.submit
 * of the first n reserved frames, interleaved. The rows are copied, given
 * their lengths (``lens``: one int for all, or a uint32 buffer of n) and
 * published WRITE_KICK_CHUNK at a time, each part kicked (fd >= 0) before the
 * next is copied. Why: in copy mode the kernel copies every frame again
 * into an skb during the kick, and sends it on before the next, touching
 * a few KiB of its own per frame; copied 2048 at a time the first frames are
 * out of the cache again by the time their kick reaches them (the kernel's
 * copy took 0.18-0.20 s per million 64-byte frames in a replay on veth,
 * 0.04-0.05 s at 256 per kick). After a kick that made no progress or
 * failed, the rest is published without kicks and the status returned, as
 * submit_fast does.
 * ST_FALLBACK (nothing done): n is not 1..reserved, a length is not
 * 1..frame_size, or a TX slot's address would not hold its row (the Python
 * path then raises in its own words).
 */
#define WRITE_KICK_CHUNK 256

static PyObject *write_submit(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map tx;
    Py_buffer uv, sv, lv;
    Py_ssize_t n;
    uint64_t frame_size;
    uint32_t length = 0;
    int fd, always, have_lens = 0;

    if (check_nargs(nargs, 9, "write_submit") || arg_n(a[2], &n) < 0
        || arg_u64(a[5], &frame_size) || (always = PyObject_IsTrue(a[8])) < 0)
        return NULL;
    fd = (int)PyLong_AsLong(a[7]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (frame_size == 0 || (frame_size & (frame_size - 1))) {
        PyErr_SetString(PyExc_ValueError, "frame_size must be a power of two");
        return NULL;
    }
    if (PyLong_Check(a[6])) {
        if (arg_u32(a[6], &length) < 0)
            return NULL;
    } else {
        if (PyObject_GetBuffer(a[6], &lv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            return NULL;
        have_lens = 1;
        if (lv.itemsize != 4 || lv.len < n * 4) {
            PyBuffer_Release(&lv);
            PyErr_SetString(PyExc_ValueError, "write_submit needs n uint32 lengths");
            return NULL;
        }
    }
    if (map_ring(a[1], &tx) < 0)
        goto fail_lens;
    Ring *r = tx.r;
    if (r->esize != 16) {
        PyErr_SetString(PyExc_ValueError, "write_submit needs a TX ring");
        goto fail_tx;
    }
    if (map_plain(a[3], &uv) < 0)
        goto fail_tx;
    if (get_rows(a[4], n > 0 ? n : 0, frame_size, &sv, "write_submit") < 0)
        goto fail_umem;
    uint64_t width = (uint64_t)sv.shape[1];
    Slots ts = slots_of(&tx);
    uint32_t prod = r->cached_prod;
    const uint32_t *lens = have_lens ? (const uint32_t *)lv.buf : NULL;
    int usual = n > 0 && (uint64_t)n <= r->reserved
                && rows_fit(ts, prod, n, (uint64_t)uv.len, width, frame_size);
    for (Py_ssize_t i = 0; usual && i < n; i++) {
        uint32_t len = lens ? lens[i] : length;
        usual = len > 0 && len <= frame_size;
    }
    uint64_t submitted;
    if (!usual || get_u64(a[0], s_submitted, &submitted) < 0) {
        PyBuffer_Release(&sv);
        PyBuffer_Release(&uv);
        PyBuffer_Release(&tx.view);
        if (have_lens)
            PyBuffer_Release(&lv);
        return PyErr_Occurred() ? NULL : PyLong_FromLong(ST_FALLBACK);
    }
    const uint8_t *src = sv.buf;
    uint8_t *umem = uv.buf;
    int status = 0;
    for (uint32_t lo = 0; lo < (uint32_t)n; lo += WRITE_KICK_CHUNK) {
        uint32_t hi = (uint32_t)n - lo > WRITE_KICK_CHUNK ? lo + WRITE_KICK_CHUNK : (uint32_t)n;
        for (uint32_t i = lo; i < hi; i++) {
            memmove(umem + *s_addr(ts, prod + i), src + (Py_ssize_t)i * sv.strides[0], width);
            *s_len(ts, prod + i) = lens ? lens[i] : length;
        }
        store_release(word(&tx, r->prod_off), prod + hi);
        uint32_t pending = 0;
        if (fd >= 0 && status == 0)
            status = kick_loop(&tx, fd, always, &pending);
    }
    int bad = tx_submitted(a[0], r, (uint32_t)n, submitted);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&uv);
    PyBuffer_Release(&tx.view);
    if (have_lens)
        PyBuffer_Release(&lv);
    return bad ? NULL : PyLong_FromLong(status);

fail_umem:
    PyBuffer_Release(&uv);
fail_tx:
    PyBuffer_Release(&tx.view);
fail_lens:
    if (have_lens)
        PyBuffer_Release(&lv);
    return NULL;
}

/* RxPath.take_returns' usual case (no extra_returns queues): the frames the
 * TX side gave back, after any older ones waiting in the RX pool, go into the
 * Fill ring as far as it has room; the rest wait in the pool (as
 * take_returns then refill do). 0 done, 1 left to the Python code (a corrupt
 * Fill consumer or a pool overflow, which it reports; nothing moved), -100
 * a Python error. */
static int take_returns_c(PyObject *rxp)
{
    PyObject *ret_o = NULL, *pool_o = NULL, *fill_o = NULL;
    Pool ret, pool;
    Map fill;
    int st = 0, have_ret = 0, have_pool = 0, have_fill = 0;

    if ((ret_o = PyObject_GetAttr(rxp, s_returns)) == NULL || pool_open(ret_o, &ret) < 0) {
        st = -100;
        goto out;
    }
    have_ret = 1;
    uint64_t k = ret.tail - ret.head;
    if (!k)
        goto out;
    if ((pool_o = PyObject_GetAttr(rxp, s_pool)) == NULL || pool_open(pool_o, &pool) < 0) {
        st = -100;
        goto out;
    }
    have_pool = 1;
    if ((fill_o = PyObject_GetAttr(rxp, s_fill)) == NULL || map_ring(fill_o, &fill) < 0) {
        st = -100;
        goto out;
    }
    have_fill = 1;
    uint64_t pc = pool.tail - pool.head, total = pc + k;
    uint32_t free = 0;
    if (fill.r->esize != 8
        || prod_free(&fill, total > UINT32_MAX ? UINT32_MAX : (uint32_t)total, &free) < 0) {
        st = 1;
        goto out;
    }
    uint64_t move = total < free ? total : free;
    uint64_t mp = pc < move ? pc : move, mr = move - mp;
    if (k - mr > pool.mask + 1 - (pc - mp)) {
        st = 1; /* more frames than the pool holds: a frame came back twice */
        goto out;
    }
    Slots fs = slots_of(&fill);
    uint32_t prod = fill.r->cached_prod;
    for (uint64_t i = 0; i < mp; i++)
        *s_addr(fs, prod + (uint32_t)i) = pool.a[(pool.head + i) & pool.mask];
    for (uint64_t i = 0; i < mr; i++)
        *s_addr(fs, prod + (uint32_t)(mp + i)) = ret.a[(ret.head + i) & ret.mask];
    uint64_t tail = pool.tail;
    for (uint64_t i = mr; i < k; i++)
        pool.a[tail++ & pool.mask] = ret.a[(ret.head + i) & ret.mask];
    if (move) {
        store_release(word(&fill, fill.r->prod_off), prod + (uint32_t)move);
        fill.r->cached_prod = prod + (uint32_t)move;
    }
    if (set_u64(pool_o, s_head, pool.head + mp) < 0 || set_u64(pool_o, s_tail, tail) < 0
        || set_u64(ret_o, s_head, ret.head + k) < 0)
        st = -100;
out:
    if (have_fill)
        PyBuffer_Release(&fill.view);
    if (have_pool)
        PyBuffer_Release(&pool.v);
    if (have_ret)
        PyBuffer_Release(&ret.v);
    Py_XDECREF(fill_o);
    Py_XDECREF(pool_o);
    Py_XDECREF(ret_o);
    return st;
}

static int add_u64(PyObject *o, PyObject *name, uint64_t d)
{
    uint64_t v;
    if (get_u64(o, name, &v) < 0)
        return -1;
    return set_u64(o, name, v + d);
}

/* The forward itself, with the TX side's lock held: TxPath.forward's usual
 * case (reclaim when half the Completion ring is in flight, then move
 * min(n, free TX slots) descriptors). k >= 0 forwarded, or a negative status
 * with nothing forwarded. */
static long forward_locked(PyObject *txp, PyObject *rxp, Map *tx, Map *comp, Map *rx,
                           Py_ssize_t n)
{
    if (tx->r->reserved || (uint64_t)n > (uint32_t)(rx->r->cached_prod - rx->r->cached_cons))
        return ST_FALLBACK; /* (reserved frames come first: forward sends nothing) */
    uint64_t submitted, completed, reclaim_at;
    if (get_u64(txp, s_submitted, &submitted) < 0 || get_u64(txp, s_completed, &completed) < 0
        || get_u64(txp, s_reclaim_at, &reclaim_at) < 0)
        return -100;
    if (submitted - completed >= reclaim_at) {
        int peers = get_truth(txp, s_peers);
        if (peers)
            return peers < 0 ? -100 : ST_FALLBACK;
        PyObject *pool_o = PyObject_GetAttr(txp, s_pool);
        Pool pool;
        if (pool_o == NULL || pool_open(pool_o, &pool) < 0) {
            Py_XDECREF(pool_o);
            return -100;
        }
        long r = tx_reclaim(txp, comp, &pool);
        PyBuffer_Release(&pool.v);
        Py_DECREF(pool_o);
        if (r < 0)
            return r;
    }
    uint32_t k = 0;
    if (prod_free(tx, (uint32_t)n, &k) < 0)
        return ST_CORRUPT;
    if (k > (uint32_t)n)
        k = (uint32_t)n;
    if (!k)
        return 0;
    Ring *rr = rx->r, *tr = tx->r;
    uint32_t cons = rr->cached_cons, prod = tr->cached_prod;
    Slots ts = slots_of(tx), rs = slots_of(rx);
    for (uint32_t i = 0; i < k; i++) /* the whole descriptor: addr, len, options */
        memcpy(s_addr(ts, prod + i), s_addr(rs, cons + i), 16);
    store_release(word(tx, tr->prod_off), prod + k);
    store_release(word(rx, rr->cons_off), cons + k);
    tr->cached_prod = prod + k;
    rr->cached_cons = cons + k;
    if (add_u64(txp, s_submitted, k) < 0 || add_u64(txp, s_foreign, k) < 0
        || add_u64(rxp, s_received, k) < 0)
        return -100;
    return (long)k;
}

/*
 * forward_kick(txpath, rxpath, n, fd, always, lock) -> k | < 0 | (k, kick_status, returns_left)
 * XskCore.forward's usual case (rxpath is txpath's own RX half, accelerated,
 * no multi-buffer) in one call: with ``lock`` held (None: no lock), reclaim
 * if due (forwarded frames' completions to rxpath.returns), then forward
 * min(n, free TX slots) packets from the RX ring; the lock let go, the kick
 * loop of drive_tx (GIL released); then the returned frames go into the Fill
 * ring (take_returns). An int k >= 0: all done. Negative: nothing forwarded
 * (ST_FALLBACK: not the usual case; ST_CORRUPT, ST_OVERFLOW: the Python path
 * redoes and reports). A tuple: k forwarded, then the kick's status
 * (as drive_tx's) and whether take_returns is left to the caller.
 */
static PyObject *forward_kick(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    PyObject *txp, *rxp, *lock, *o[3] = {NULL, NULL, NULL};
    Map tx, comp, rx;
    int fd, always, mapped = 0;
    Py_ssize_t n;
    long k = -100;
    PyObject *res = NULL;

    if (check_nargs(nargs, 6, "forward_kick") || arg_n(a[2], &n) < 0
        || (always = PyObject_IsTrue(a[4])) < 0)
        return NULL;
    fd = (int)PyLong_AsLong(a[3]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0)
        return PyLong_FromLong(ST_FALLBACK);
    txp = a[0];
    rxp = a[1];
    lock = a[5];
    if ((o[0] = PyObject_GetAttr(txp, s_tx)) == NULL || (o[1] = PyObject_GetAttr(txp, s_comp)) == NULL
        || (o[2] = PyObject_GetAttr(rxp, s_rx)) == NULL)
        goto out;
    if (map_ring(o[0], &tx) < 0)
        goto out;
    mapped = 1;
    if (map_ring(o[1], &comp) < 0)
        goto out;
    mapped = 2;
    if (map_ring(o[2], &rx) < 0)
        goto out;
    mapped = 3;
    if (tx.r->esize != 16 || comp.r->esize != 8 || rx.r->esize != 16) {
        PyErr_SetString(PyExc_ValueError, "forward_kick needs TX, Completion and RX rings");
        goto out;
    }
    if (lock != Py_None) {
        PyObject *r = PyObject_CallMethod(lock, "acquire", NULL);
        if (r == NULL)
            goto out;
        Py_DECREF(r);
    }
    k = forward_locked(txp, rxp, &tx, &comp, &rx, n);
    if (lock != Py_None) {
        PyObject *et, *ev, *tb; /* (an error of the locked step waits for the release) */
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *r = PyObject_CallMethod(lock, "release", NULL);
        if (r == NULL) {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(tb);
            k = -100;
            goto out;
        }
        Py_DECREF(r);
        PyErr_Restore(et, ev, tb);
    }
    if (k < 0) {
        if (k != -100)
            res = PyLong_FromLong(k);
        goto out;
    }
    int status = 0, left = 0;
    uint32_t pending = 0;
    if (fd >= 0)
        status = kick_loop(&tx, fd, always, &pending);
    int extra = get_truth(rxp, s_extra_returns);
    if (extra < 0)
        goto out;
    left = extra ? 1 : take_returns_c(rxp);
    if (left == -100)
        goto out;
    if (!status && !left)
        res = PyLong_FromLong(k);
    else
        res = Py_BuildValue("(lii)", k, status, left);
out:
    if (mapped >= 3)
        PyBuffer_Release(&rx.view);
    if (mapped >= 2)
        PyBuffer_Release(&comp.view);
    if (mapped >= 1)
        PyBuffer_Release(&tx.view);
    Py_XDECREF(o[0]);
    Py_XDECREF(o[1]);
    Py_XDECREF(o[2]);
    return res;
}

/* RxPath.refill in C: as many pooled frames as fit go into the Fill ring.
 * 0 done, 1 left to Python (a corrupt Fill consumer: it reports), -100 error. */
static int refill_c(PyObject *rxp, Map *fill)
{
    PyObject *pool_o = PyObject_GetAttr(rxp, s_pool);
    Pool pool;
    if (pool_o == NULL || pool_open(pool_o, &pool) < 0) {
        Py_XDECREF(pool_o);
        return -100;
    }
    int st = 0;
    uint64_t want = pool.tail - pool.head;
    uint32_t free = 0;
    if (want) {
        if (prod_free(fill, want > UINT32_MAX ? UINT32_MAX : (uint32_t)want, &free) < 0) {
            st = 1;
        } else {
            uint64_t m = want < free ? want : free;
            Slots fs = slots_of(fill);
            uint32_t prod = fill->r->cached_prod;
            for (uint64_t i = 0; i < m; i++)
                *s_addr(fs, prod + (uint32_t)i) = pool.a[(pool.head + i) & pool.mask];
            if (m) {
                store_release(word(fill, fill->r->prod_off), prod + (uint32_t)m);
                fill->r->cached_prod = prod + (uint32_t)m;
                if (set_u64(pool_o, s_head, pool.head + m) < 0)
                    st = -100;
            }
        }
    }
    PyBuffer_Release(&pool.v);
    Py_DECREF(pool_o);
    return st;
}

/*
 * release_step(rxpath, n, start) -> flags | ST_CORRUPT | ST_FALLBACK
 * RxBatch's release in one call: release_fast's step on rxpath.rx and
 * rxpath.fill for a batch of n that starts at RX index ``start``
 * (ST_FALLBACK, nothing done, when the ring moved since or rxpath.closed is
 * set: the caller's checks report it), then rxpath.received
 * += n, the spare frames top the Fill ring up once it is at most half full
 * (_top_up) and, when rxpath.has_returners, the frames its TX side gave back
 * go into the Fill ring (take_returns). Flags: 1 the Fill ring asks for a
 * wakeup; 4 the top-up or the returns are left to the Python code (a corrupt
 * Fill consumer, frames returned twice, or other sockets' queues).
 */
static PyObject *release_step(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map rx, fill;
    uint64_t and_mask;
    uint32_t start;
    Py_ssize_t n;
    long st = 0;

    if (check_nargs(nargs, 3, "release_step") || arg_n(a[1], &n) < 0 || arg_u32(a[2], &start))
        return NULL;
    PyObject *rxp = a[0];
    int closed = get_truth(rxp, s_closed);
    if (closed)
        return closed < 0 ? NULL : PyLong_FromLong(ST_FALLBACK);
    /* Frames a TX side gave back go in before the batch's own (commit's
     * order, which the ring model checks): left to the Python code. */
    int hr = get_truth(rxp, s_has_returners);
    if (hr) {
        if (hr < 0)
            return NULL;
        int extra = get_truth(rxp, s_extra_returns);
        if (extra)
            return extra < 0 ? NULL : PyLong_FromLong(ST_FALLBACK);
        PyObject *ret_o = PyObject_GetAttr(rxp, s_returns);
        uint64_t head = 0, tail = 0;
        int bad = ret_o == NULL || get_u64(ret_o, s_head, &head) < 0
                  || get_u64(ret_o, s_tail, &tail) < 0;
        Py_XDECREF(ret_o);
        if (bad)
            return NULL;
        if (head != tail)
            return PyLong_FromLong(ST_FALLBACK);
    }
    PyObject *rx_o = PyObject_GetAttr(rxp, s_rx);
    if (rx_o == NULL)
        return NULL;
    PyObject *fill_o = PyObject_GetAttr(rxp, s_fill);
    if (fill_o == NULL) {
        Py_DECREF(rx_o);
        return NULL;
    }
    /* (the path holds both rings for the call) */
    Py_DECREF(rx_o);
    Py_DECREF(fill_o);
    if (get_u64(rxp, s_base_mask, &and_mask) < 0 || map_ring(rx_o, &rx) < 0)
        return NULL;
    if (map_ring(fill_o, &fill) < 0) {
        PyBuffer_Release(&rx.view);
        return NULL;
    }
    Ring *rr = rx.r, *fr = fill.r;
    if (rr->esize != 16 || fr->esize != 8) {
        PyErr_SetString(PyExc_ValueError, "release_step needs an RX ring and a Fill ring");
        st = -100;
    } else if (start != rr->cached_cons) {
        st = ST_FALLBACK; /* the ring moved under the batch: Python says so */
    } else {
        st = rx_release_step(&rx, &fill, n, and_mask);
    }
    if (st == 0) {
        if (add_u64(rxp, s_received, (uint64_t)n) < 0) {
            st = -100;
            goto out;
        }
        /* _top_up: the spares go in once the Fill ring is at most half full */
        uint32_t half = fr->entries / 2, free_now = 0;
        int left = 0;
        if (prod_free(&fill, half, &free_now) < 0)
            left = 1;
        else if (free_now >= half)
            left = refill_c(rxp, &fill);
        if (left == 0) {
            int hr = get_truth(rxp, s_has_returners);
            if (hr < 0) {
                left = -100;
            } else if (hr) {
                int extra = get_truth(rxp, s_extra_returns);
                left = extra < 0 ? -100 : extra ? 1 : take_returns_c(rxp);
            }
        }
        if (left == -100) {
            st = -100;
            goto out;
        }
        if (left)
            st |= 4;
        if (load_acquire(word(&fill, fr->flags_off)) & XDP_RING_NEED_WAKEUP)
            st |= 1;
    }
out:
    PyBuffer_Release(&fill.view);
    PyBuffer_Release(&rx.view);
    if (st == -100)
        return NULL;
    return PyLong_FromLong(st);
}

/*
 * rx_wait(rx, fill, fd, wake_fd, timeout_ms) -> 1 | 0 | 2 | < 0
 * RxSocket.poll_wait's usual call (a finite timeout, nothing available yet)
 * in one call: look at the RX ring; kick the Fill ring if it asks (a
 * zero-length recvfrom); one poll(2) on the socket and the wake eventfd with
 * the GIL released; look again. 1: a packet is there; 0: the timeout passed
 * with none. A wake with none (a signal, whose handlers run here, or a
 * spurious one) polls again for what is left of the timeout, so a process
 * that takes signals often still gets its timeout, not a new one per
 * signal. 2: poll(2) failed otherwise. 2 and negative values are left to
 * the Python code, which redoes the
 * step and reports: ST_CORRUPT a corrupt RX producer (nothing cached),
 * -2 POLLERR/POLLHUP/POLLNVAL on the socket, -3 the wake eventfd fired
 * (the socket is being closed), -(100 + errno) the Fill kick failed.
 */
/* rx_wait's look at the RX ring: 1 when the wait is over (``st`` set to 1, a
 * packet is there, or to ST_CORRUPT) */
static int rx_look(Map *rx, long *st)
{
    uint32_t avail = 0;

    if (cons_avail(rx, 1, &avail) < 0) {
        *st = ST_CORRUPT;
        return 1;
    }
    if (avail) {
        *st = 1;
        return 1;
    }
    return 0;
}

static PyObject *rx_wait(PyObject *mod, PyObject *const *a, Py_ssize_t nargs)
{
    Map rx, fill;
    int fd, wake_fd, ms;
    long st = 0;

    if (check_nargs(nargs, 5, "rx_wait"))
        return NULL;
    fd = (int)PyLong_AsLong(a[2]);
    wake_fd = (int)PyLong_AsLong(a[3]);
    ms = (int)PyLong_AsLong(a[4]);
    if (PyErr_Occurred())
        return NULL;
    if (map_two(a[0], a[1], &rx, &fill, 8, "rx_wait", "an RX ring and a Fill ring") < 0)
        return NULL;
    if (rx_look(&rx, &st))
        goto out;
    if (load_acquire(word(&fill, fill.r->flags_off)) & XDP_RING_NEED_WAKEUP) {
        ssize_t r;
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        r = recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
        if (r < 0)
            err = errno;
        Py_END_ALLOW_THREADS
        if (r < 0 && err != EAGAIN && err != EBUSY && err != ENOBUFS && err != EINTR) {
            st = -(100 + err);
            goto out;
        }
    }
    struct pollfd pf[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    struct timespec t0, now;
    int left = ms < 0 ? 0 : ms;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int n, err = 0;
        Py_BEGIN_ALLOW_THREADS
        n = poll(pf, 2, left);
        if (n < 0)
            err = errno;
        Py_END_ALLOW_THREADS
        if (n < 0 && err != EINTR) {
            st = 2; /* poll(2) itself failed: the Python steps redo it and raise */
            goto out;
        }
        if (n < 0 && PyErr_CheckSignals() < 0) {
            st = -100; /* a signal handler raised */
            goto out;
        }
        if (n > 0 && (pf[0].revents & (POLLERR | POLLHUP | POLLNVAL))) {
            st = -2;
            goto out;
        }
        if (n > 0 && pf[1].revents) {
            st = -3;
            goto out;
        }
        if (rx_look(&rx, &st))
            goto out;
        if (n == 0)
            break; /* timed out */
        /* woke with nothing (EINTR, or a spurious wake): what is left */
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long spent = (now.tv_sec - t0.tv_sec) * 1000LL
                          + (now.tv_nsec - t0.tv_nsec) / 1000000LL;
        if (spent >= ms)
            break;
        left = (int)(ms - spent);
    }
    st = 0;
out:
    PyBuffer_Release(&fill.view);
    PyBuffer_Release(&rx.view);
    if (st == -100)
        return NULL;
    return PyLong_FromLong(st);
}

static PyMethodDef methods[] = {
    {"rx_peek", (PyCFunction)(void (*)(void))rx_peek, METH_FASTCALL,
     "rx_peek(rx, umem, i) -> memoryview"},
    {"tx_peek", (PyCFunction)(void (*)(void))tx_peek, METH_FASTCALL,
     "tx_peek(tx, umem, frame_size, i, length) -> memoryview"},
    {"pcap_scan", (PyCFunction)(void (*)(void))pcap_scan, METH_FASTCALL,
     "pcap_scan(buf, pos, max_packets, swap, max_caplen, hdr, offs[, ifaces]) -> (k, end, shortest, longest)"},
    {"gather_rows", (PyCFunction)(void (*)(void))gather_rows, METH_FASTCALL,
     "gather_rows(buf, offs, lens, n, out)"},
    {"write_rows", (PyCFunction)(void (*)(void))write_rows, METH_FASTCALL,
     "write_rows(tx, start, n, umem, rows, frame_size) -> 0 or -1"},
    {"pool_to_ring", (PyCFunction)(void (*)(void))pool_to_ring, METH_FASTCALL,
     "pool_to_ring(pool, pool_start, ring, ring_start, n, clear_len)"},
    {"ring_to_pool", (PyCFunction)(void (*)(void))ring_to_pool, METH_FASTCALL,
     "ring_to_pool(ring, ring_start, n, pool, pool_start, and_mask, limit) -> n or -1"},
    {"comp_route", (PyCFunction)(void (*)(void))comp_route, METH_FASTCALL,
     "comp_route(comp, start, n, and_mask, limit, rx_limit, own, own_start, own_room, peer, "
     "peer_start, peer_room)"},
    {"rx_to_fill", (PyCFunction)(void (*)(void))rx_to_fill, METH_FASTCALL,
     "rx_to_fill(rx, fill, rx_cons, fill_prod, n, and_mask)"},
    {"forward", (PyCFunction)(void (*)(void))forward, METH_FASTCALL,
     "forward(rx, tx, rx_cons, tx_prod, n)"},
    {"swap_macs", (PyCFunction)(void (*)(void))swap_macs, METH_FASTCALL,
     "swap_macs(rx, start, n, umem, frame_size) -> 0, -1 (corrupt) or -2 (short)"},
    {"set_lens", (PyCFunction)(void (*)(void))set_lens, METH_FASTCALL,
     "set_lens(tx, start, n, length)"},
    {"drive_tx", (PyCFunction)(void (*)(void))drive_tx, METH_FASTCALL,
     "drive_tx(fd, tx, always) -> (pending, status)"},
    {"peek_fast", (PyCFunction)(void (*)(void))peek_fast, METH_FASTCALL,
     "peek_fast(ring, n) -> min(n, available) or -1 (corrupt)"},
    {"release_fast", (PyCFunction)(void (*)(void))release_fast, METH_FASTCALL,
     "release_fast(rx, fill, n, and_mask) -> flags (1 wakeup, 2 more room), -1 or -4"},
    {"forward_fast", (PyCFunction)(void (*)(void))forward_fast, METH_FASTCALL,
     "forward_fast(rx, tx, n) -> forwarded, -1 (corrupt) or -4 (not the usual case)"},
    {"reserve_fast", (PyCFunction)(void (*)(void))reserve_fast, METH_FASTCALL,
     "reserve_fast(path, tx, comp, pool, n, clear_len) -> reserved (<= n) or < 0"},
    {"write_submit", (PyCFunction)(void (*)(void))write_submit, METH_FASTCALL,
     "write_submit(path, tx, n, umem, rows, frame_size, lens, fd, always) -> status or -4"},
    {"submit_fast", (PyCFunction)(void (*)(void))submit_fast, METH_FASTCALL,
     "submit_fast(path, tx, n, length, fd, always) -> kick status or -4"},
    {"forward_kick", (PyCFunction)(void (*)(void))forward_kick, METH_FASTCALL,
     "forward_kick(txpath, rxpath, n, fd, always, lock) -> k, < 0, or (k, status, left)"},
    {"rx_wait", (PyCFunction)(void (*)(void))rx_wait, METH_FASTCALL,
     "rx_wait(rx, fill, fd, wake_fd, timeout_ms) -> 1 ready, 0 timed out, 2 woke, < 0"},
    {"release_step", (PyCFunction)(void (*)(void))release_step, METH_FASTCALL,
     "release_step(rxpath, n, start) -> flags (1 wakeup, 4 left to Python), -1 or -4"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_accel",
    "Optional compiled inner loops for xdp_socket's rings (see xdp_socket._ring).", -1, methods,
};

PyMODINIT_FUNC PyInit__accel(void)
{
    if (PyType_Ready(&RingType) < 0)
        return NULL;
    struct { PyObject **p; const char *s; } names[] = {
        {&s_buf, "buf"}, {&s_head, "head"}, {&s_tail, "tail"}, {&s_reserved, "reserved"},
        {&s_submitted, "submitted"}, {&s_completed, "completed"}, {&s_reclaim_at, "_reclaim_at"},
        {&s_base_mask, "base_mask"}, {&s_umem_size, "umem_size"},
        {&s_multi_buffer, "multi_buffer"}, {&s_foreign, "foreign_in_flight"},
        {&s_rx_peer, "rx_peer"}, {&s_returns, "returns"}, {&s_rx_limit, "rx_limit"}, {&s_peers, "peers"},
        {&s_tx, "tx"}, {&s_comp, "comp"}, {&s_rx, "rx"}, {&s_pool, "pool"}, {&s_fill, "fill"},
        {&s_received, "received"}, {&s_extra_returns, "extra_returns"},
        {&s_has_returners, "has_returners"}, {&s_closed, "closed"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (*names[i].p == NULL && (*names[i].p = PyUnicode_InternFromString(names[i].s)) == NULL)
            return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RingType);
    if (PyModule_AddObject(m, "Ring", (PyObject *)&RingType) < 0) {
        Py_DECREF(&RingType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
