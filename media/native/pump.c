/* media._native's pump: a thread of its own that reads the legs' sockets
 * (epoll, recvmmsg), forwards every steady packet in C (unprotect once,
 * rewrite, protect and sendmmsg for each destination) and keeps the state
 * that forwarding changes (a stream's sequence state and NACK history, a
 * leg's transport-wide numbers and arrivals, the counters) where Python reads
 * it. Everything else it reads (STUN, DTLS, RTCP, a stream's first packets,
 * RTX, anything without a route) it queues for Python, which is woken through
 * an eventfd and takes the queue a batch at a time.
 *
 * Python decides, the pump does: a route (a source stream of a leg to its
 * destinations) exists only while Python installs it, and each destination
 * is checked per packet against what Python last said of it (the stream's
 * steady source, the leg's sending state). What the thread shares with
 * Python is guarded by wl_state_lock (objects.h); the thread never touches a
 * Python object, the references are taken and dropped by Python's calls.
 *
 *  Stream    one forwarded stream's sequence state and NACK history
 *  SentLog   a leg's transport-wide numbers and what each packet was
 *  Outbound  a leg's sending side: socket, SRTP session, address, state
 *  Tally     a relay's counters
 *  Inbound   a leg's receiving side: counters, arrivals, routes
 *  Pump      the thread, its sockets and the queue for Python
 */
#include "objects.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "wl_batch.h"

pthread_mutex_t wl_state_lock = PTHREAD_MUTEX_INITIALIZER;

#define PUMP_SLOT 2048         /* a datagram read or sent, at most */
#define PUMP_SOCKETS 1024      /* sockets one pump reads */
#define PUMP_READ_BATCH 32     /* datagrams per recvmmsg */
#define PUMP_SEND_BATCH 128    /* datagrams queued before a sendmmsg */
#define PUMP_QUEUE 4096        /* datagrams waiting for Python (a backlog of DTLS handshakes) */
#define HISTORY 512            /* media/forwarding.py HISTORY_SIZE */
#define ROUTES 16              /* source streams of one leg with a route */
#define ROUTE_DESTINATIONS 4   /* a call of four, and a listener */
#define ARRIVALS 8192          /* arrivals between two takes */
#define STOP_KEY UINT64_MAX

enum { OUT_DECLINE = -1, OUT_WAIT = 0, OUT_SEND = 1 };

static int64_t monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static int seq_newer(uint16_t a, uint16_t b)
{
    return a != b && (uint16_t)(a - b) < 0x8000;
}

/* ---- Stream ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    uint16_t seq_offset;
    uint32_t ts_offset;
    int has_last;
    uint16_t last_seq;
    uint32_t last_ts;
    int64_t last_sent_ns;
    uint64_t forwarded;
    uint64_t steady_key; /* the source it forwards now, steadily; 0: none */
    uint8_t *history[HISTORY];
    uint16_t history_length[HISTORY];
} StreamObject;

static PyTypeObject StreamType;

static PyObject *Stream_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, ":Stream", keywords))
        return NULL;
    return type->tp_alloc(type, 0);
}

static void Stream_dealloc(StreamObject *self)
{
    for (int i = 0; i < HISTORY; i++)
        free(self->history[i]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Keep data as history[index] (locked). 0 when out of memory. */
static int stream_keep(StreamObject *s, unsigned index, const uint8_t *data, size_t length)
{
    if (s->history[index] == NULL) {
        s->history[index] = malloc(PUMP_SLOT);
        if (s->history[index] == NULL)
            return 0;
    }
    memcpy(s->history[index], data, length);
    s->history_length[index] = (uint16_t)length;
    return 1;
}

/* OutboundStream._sent: a packet with these numbers left (locked). */
static void stream_sent(StreamObject *s, uint16_t seq, uint32_t ts, int64_t now_ns)
{
    if (!s->has_last || seq_newer(seq, s->last_seq)) {
        s->has_last = 1;
        s->last_seq = seq;
        s->last_ts = ts;
        s->last_sent_ns = now_ns;
    }
    s->forwarded++;
}

static int history_index(PyObject *key, unsigned *index)
{
    long value;
    if (!PyLong_CheckExact(key)) {
        PyErr_SetString(PyExc_TypeError, "a history index is an int");
        return 0;
    }
    value = PyLong_AsLong(key);
    if (value == -1 && PyErr_Occurred())
        return 0;
    if (value < 0 || value >= HISTORY) {
        PyErr_Format(PyExc_KeyError, "%ld", value);
        return 0;
    }
    *index = (unsigned)value;
    return 1;
}

static PyObject *stream_get(StreamObject *self, unsigned index)
{
    PyObject *data = NULL;
    WL_LOCK();
    if (self->history[index] != NULL && self->history_length[index] > 0)
        data = PyBytes_FromStringAndSize((const char *)self->history[index],
                                         self->history_length[index]);
    WL_UNLOCK();
    return data;
}

static PyObject *Stream_subscript(StreamObject *self, PyObject *key)
{
    unsigned index;
    PyObject *data;
    if (!history_index(key, &index))
        return NULL;
    data = stream_get(self, index);
    if (data == NULL && !PyErr_Occurred())
        PyErr_SetObject(PyExc_KeyError, key);
    return data;
}

static int Stream_ass_subscript(StreamObject *self, PyObject *key, PyObject *value)
{
    unsigned index;
    int kept;
    if (!history_index(key, &index))
        return -1;
    if (value == NULL) {
        WL_LOCK();
        self->history_length[index] = 0;
        WL_UNLOCK();
        return 0;
    }
    if (!PyBytes_CheckExact(value)) {
        PyErr_SetString(PyExc_TypeError, "history keeps bytes");
        return -1;
    }
    if (PyBytes_GET_SIZE(value) < 1 || PyBytes_GET_SIZE(value) > PUMP_SLOT) {
        PyErr_SetString(PyExc_ValueError, "a kept packet is 1-2048 octets");
        return -1;
    }
    WL_LOCK();
    kept = stream_keep(self, index, (const uint8_t *)PyBytes_AS_STRING(value),
                       (size_t)PyBytes_GET_SIZE(value));
    WL_UNLOCK();
    if (!kept) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *Stream_history_get(StreamObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned index;
    PyObject *data;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(index, default=None)");
        return NULL;
    }
    if (!PyLong_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "a history index is an int");
        return NULL;
    }
    {
        long value = PyLong_AsLong(args[0]);
        if (value == -1 && PyErr_Occurred())
            return NULL;
        if (value < 0 || value >= HISTORY)
            goto missing;
        index = (unsigned)value;
    }
    data = stream_get(self, index);
    if (data != NULL || PyErr_Occurred())
        return data;
missing:
    if (nargs == 2) {
        Py_INCREF(args[1]);
        return args[1];
    }
    Py_RETURN_NONE;
}

static PyMappingMethods Stream_mapping = {
    .mp_subscript = (binaryfunc)Stream_subscript,
    .mp_ass_subscript = (objobjargproc)Stream_ass_subscript,
};

/* Integer attributes, read and written under the lock. */
enum {
    S_SEQ_OFFSET,
    S_TS_OFFSET,
    S_LAST_SEQ,
    S_LAST_TS,
    S_FORWARDED,
    S_STEADY_KEY,
};

static PyObject *Stream_get(StreamObject *self, void *closure)
{
    unsigned long long value = 0;
    int none = 0;
    WL_LOCK();
    switch ((int)(intptr_t)closure) {
    case S_SEQ_OFFSET:
        value = self->seq_offset;
        break;
    case S_TS_OFFSET:
        value = self->ts_offset;
        break;
    case S_LAST_SEQ:
        none = !self->has_last;
        value = self->last_seq;
        break;
    case S_LAST_TS:
        none = !self->has_last;
        value = self->last_ts;
        break;
    case S_FORWARDED:
        value = self->forwarded;
        break;
    default:
        value = self->steady_key;
        break;
    }
    WL_UNLOCK();
    if (none)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(value);
}

static int Stream_set(StreamObject *self, PyObject *value, void *closure)
{
    int what = (int)(intptr_t)closure;
    unsigned long long number, limit;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete a stream's attribute");
        return -1;
    }
    if ((what == S_LAST_SEQ || what == S_LAST_TS) && value == Py_None) {
        WL_LOCK();
        self->has_last = 0;
        WL_UNLOCK();
        return 0;
    }
    if (!PyLong_CheckExact(value)) {
        PyErr_SetString(PyExc_TypeError, "an int");
        return -1;
    }
    number = PyLong_AsUnsignedLongLong(value);
    if (number == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    limit = what == S_SEQ_OFFSET || what == S_LAST_SEQ ? 0xFFFFull
            : what == S_TS_OFFSET || what == S_LAST_TS ? 0xFFFFFFFFull
                                                       : UINT64_MAX;
    if (number > limit) {
        PyErr_SetString(PyExc_ValueError, "out of range");
        return -1;
    }
    WL_LOCK();
    switch (what) {
    case S_SEQ_OFFSET:
        self->seq_offset = (uint16_t)number;
        break;
    case S_TS_OFFSET:
        self->ts_offset = (uint32_t)number;
        break;
    case S_LAST_SEQ:
        self->last_seq = (uint16_t)number;
        self->has_last = 1;
        break;
    case S_LAST_TS:
        self->last_ts = (uint32_t)number;
        self->has_last = 1;
        break;
    case S_FORWARDED:
        self->forwarded = number;
        break;
    default:
        self->steady_key = number;
        break;
    }
    WL_UNLOCK();
    return 0;
}

static PyObject *Stream_get_last_sent_at(StreamObject *self, void *Py_UNUSED(closure))
{
    int64_t ns;
    WL_LOCK();
    ns = self->last_sent_ns;
    WL_UNLOCK();
    return PyFloat_FromDouble((double)ns / 1e9);
}

static int Stream_set_last_sent_at(StreamObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    double seconds;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete a stream's attribute");
        return -1;
    }
    seconds = PyFloat_AsDouble(value);
    if (seconds == -1.0 && PyErr_Occurred())
        return -1;
    WL_LOCK();
    self->last_sent_ns = (int64_t)(seconds * 1e9);
    WL_UNLOCK();
    return 0;
}

static PyObject *Stream_sent(StreamObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long seq, ts;
    if (nargs != 2 || !PyLong_CheckExact(args[0]) || !PyLong_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "sent(sequence_number, timestamp)");
        return NULL;
    }
    seq = PyLong_AsUnsignedLongLong(args[0]);
    ts = PyLong_AsUnsignedLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (seq > 0xFFFF || ts > 0xFFFFFFFFull) {
        PyErr_SetString(PyExc_ValueError, "out of range");
        return NULL;
    }
    WL_LOCK();
    stream_sent(self, (uint16_t)seq, (uint32_t)ts, monotonic_ns());
    WL_UNLOCK();
    Py_RETURN_NONE;
}

static PyMethodDef Stream_methods[] = {
    {"get", (PyCFunction)(void (*)(void))Stream_history_get, METH_FASTCALL,
     "get(index, default=None): the packet kept at index (sequence number % 512)."},
    {"sent", (PyCFunction)(void (*)(void))Stream_sent, METH_FASTCALL,
     "sent(sequence_number, timestamp): a packet left (OutboundStream._sent's numbers)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Stream_getset[] = {
    {"seq_offset", (getter)Stream_get, (setter)Stream_set, "Added to a source's numbers.",
     (void *)S_SEQ_OFFSET},
    {"ts_offset", (getter)Stream_get, (setter)Stream_set, "Added to a source's timestamps.",
     (void *)S_TS_OFFSET},
    {"last_seq", (getter)Stream_get, (setter)Stream_set, "The newest number sent, or None.",
     (void *)S_LAST_SEQ},
    {"last_ts", (getter)Stream_get, (setter)Stream_set, "Its timestamp, or None.",
     (void *)S_LAST_TS},
    {"forwarded", (getter)Stream_get, (setter)Stream_set, "Packets sent.", (void *)S_FORWARDED},
    {"steady_key", (getter)Stream_get, (setter)Stream_set,
     "The source the pump may forward steadily (0: none).", (void *)S_STEADY_KEY},
    {"last_sent_at", (getter)Stream_get_last_sent_at, (setter)Stream_set_last_sent_at,
     "When the newest was sent (time.monotonic()).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject StreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._native.Stream",
    .tp_basicsize = sizeof(StreamObject),
    .tp_dealloc = (destructor)Stream_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Stream()\n--\n\n"
              "One forwarded stream's sequence state and NACK history (512 packets by\n"
              "sequence number % 512), shared with the pump's thread.",
    .tp_as_mapping = &Stream_mapping,
    .tp_methods = Stream_methods,
    .tp_getset = Stream_getset,
    .tp_new = Stream_new,
};

/* ---- SentLog ------------------------------------------------------------------ */

typedef struct {
    int64_t key; /* the unwrapped number, -1: empty */
    int64_t sent_us;
    int64_t size;
} sent_entry;

typedef struct {
    PyObject_HEAD
    int64_t next;
    unsigned capacity;
    long long overhead;
    sent_entry *entries;
} SentLogObject;

static PyTypeObject SentLogType;

static PyObject *SentLog_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"history", "overhead", NULL};
    int capacity;
    long long overhead;
    SentLogObject *self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iL:SentLog", keywords, &capacity, &overhead))
        return NULL;
    if (capacity < 1 || capacity > (1 << 20) || overhead < 0 || overhead > 65535) {
        PyErr_SetString(PyExc_ValueError, "history 1-1048576, overhead 0-65535");
        return NULL;
    }
    self = (SentLogObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->capacity = (unsigned)capacity;
    self->overhead = overhead;
    self->entries = malloc(sizeof *self->entries * (size_t)capacity);
    if (self->entries == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (int i = 0; i < capacity; i++)
        self->entries[i].key = -1;
    return (PyObject *)self;
}

static void SentLog_dealloc(SentLogObject *self)
{
    free(self->entries);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* SentLog.assign (locked): the 16-bit number of a packet of size bytes sent now. */
static uint16_t sent_assign(SentLogObject *log, int64_t size, int64_t now_us)
{
    int64_t unwrapped = log->next++;
    sent_entry *e = &log->entries[(uint64_t)unwrapped % log->capacity];
    e->key = unwrapped;
    e->sent_us = now_us;
    e->size = size + log->overhead;
    return (uint16_t)unwrapped;
}

static PyObject *SentLog_assign(SentLogObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long size, now_us;
    uint16_t number;
    if (nargs != 2 || !PyLong_CheckExact(args[0]) || !PyLong_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "assign(size, now_us)");
        return NULL;
    }
    size = PyLong_AsLongLong(args[0]);
    now_us = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    WL_LOCK();
    number = sent_assign(self, size, now_us);
    WL_UNLOCK();
    return PyLong_FromLong(number);
}

static PyObject *SentLog_get(SentLogObject *self, PyObject *key)
{
    long long unwrapped;
    sent_entry found = {-1, 0, 0};
    if (!PyLong_CheckExact(key)) {
        PyErr_SetString(PyExc_TypeError, "get(unwrapped)");
        return NULL;
    }
    unwrapped = PyLong_AsLongLong(key);
    if (unwrapped == -1 && PyErr_Occurred()) {
        PyErr_Clear(); /* beyond 64 bits: never assigned */
        Py_RETURN_NONE;
    }
    if (unwrapped < 0)
        Py_RETURN_NONE;
    WL_LOCK();
    if (self->entries[(unsigned long long)unwrapped % self->capacity].key == unwrapped)
        found = self->entries[(unsigned long long)unwrapped % self->capacity];
    WL_UNLOCK();
    if (found.key < 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(LL)", (long long)found.sent_us, (long long)found.size);
}

static PyObject *SentLog_get_next(SentLogObject *self, void *Py_UNUSED(closure))
{
    int64_t next;
    WL_LOCK();
    next = self->next;
    WL_UNLOCK();
    return PyLong_FromLongLong(next);
}

static PyMethodDef SentLog_methods[] = {
    {"assign", (PyCFunction)(void (*)(void))SentLog_assign, METH_FASTCALL,
     "assign(size, now_us) -> the next 16-bit number, for a packet of size (+ overhead)."},
    {"get", (PyCFunction)SentLog_get, METH_O,
     "get(unwrapped) -> (sent_us, size with overhead) or None."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef SentLog_getset[] = {
    {"next", (getter)SentLog_get_next, NULL, "The unwrapped number assign gives next.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SentLogType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._native.SentLog",
    .tp_basicsize = sizeof(SentLogObject),
    .tp_dealloc = (destructor)SentLog_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SentLog(history, overhead)\n--\n\n"
              "A leg's transport-wide sequence numbers and what each packet was: the\n"
              "last `history` of them (media/downlink.py SentLog's storage).",
    .tp_methods = SentLog_methods,
    .tp_getset = SentLog_getset,
    .tp_new = SentLog_new,
};

/* ---- Tally -------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    uint64_t packets, bytes;
} TallyObject;

static PyTypeObject TallyType;

static PyObject *Tally_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, ":Tally", keywords))
        return NULL;
    return type->tp_alloc(type, 0);
}

static PyObject *Tally_get(TallyObject *self, void *closure)
{
    uint64_t value;
    WL_LOCK();
    value = closure == NULL ? self->packets : self->bytes;
    WL_UNLOCK();
    return PyLong_FromUnsignedLongLong(value);
}

static PyGetSetDef Tally_getset[] = {
    {"packets", (getter)Tally_get, NULL, "Packets the pump forwarded.", NULL},
    {"bytes", (getter)Tally_get, NULL, "Their bytes (before SRTP).", (void *)1},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._native.Tally",
    .tp_basicsize = sizeof(TallyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Tally()\n--\n\nWhat the pump forwarded for one relay.",
    .tp_getset = Tally_getset,
    .tp_new = Tally_new,
};

/* ---- Outbound ----------------------------------------------------------------- */

struct PumpObject;

typedef struct {
    PyObject_HEAD
    int state;            /* OUT_DECLINE, OUT_WAIT, OUT_SEND */
    long long socket_tag; /* the pump's socket it sends from; -1: none */
    SessionObject *tx;
    struct sockaddr_storage address;
    socklen_t address_length;
    SentLogObject *sent; /* NULL without transport-cc */
    uint64_t packets_out;
} OutboundObject;

static PyTypeObject OutboundType;

static PyObject *Outbound_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"sent", NULL};
    PyObject *sent = Py_None;
    OutboundObject *self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:Outbound", keywords, &sent))
        return NULL;
    if (sent != Py_None && !PyObject_TypeCheck(sent, &SentLogType)) {
        PyErr_SetString(PyExc_TypeError, "sent must be a SentLog or None");
        return NULL;
    }
    self = (OutboundObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->state = OUT_DECLINE;
    self->socket_tag = -1;
    if (sent != Py_None) {
        Py_INCREF(sent);
        self->sent = (SentLogObject *)sent;
    }
    return (PyObject *)self;
}

static void Outbound_dealloc(OutboundObject *self)
{
    Py_XDECREF(self->tx);
    Py_XDECREF(self->sent);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* target(socket_tag, tx, address): where and how this leg's packets go (the state
 * is left as it was). */
static PyObject *Outbound_target(OutboundObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long tag;
    SessionObject *old;
    if (nargs != 3 || !PyLong_CheckExact(args[0]) || !PyObject_TypeCheck(args[1], &SessionType) ||
        !PyObject_TypeCheck(args[2], &AddressType)) {
        PyErr_SetString(PyExc_TypeError, "target(socket_tag: int, tx: Session, address: Address)");
        return NULL;
    }
    tag = PyLong_AsLongLong(args[0]);
    if (tag == -1 && PyErr_Occurred())
        return NULL;
    Py_INCREF(args[1]);
    WL_LOCK();
    old = self->tx;
    self->tx = (SessionObject *)args[1];
    self->socket_tag = tag;
    memcpy(&self->address, &((AddressObject *)args[2])->address, sizeof self->address);
    self->address_length = ((AddressObject *)args[2])->length;
    WL_UNLOCK();
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyObject *Outbound_get_state(OutboundObject *self, void *Py_UNUSED(closure))
{
    int state;
    WL_LOCK();
    state = self->state;
    WL_UNLOCK();
    return PyLong_FromLong(state);
}

static int Outbound_set_state(OutboundObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    long state;
    if (value == NULL || !PyLong_CheckExact(value)) {
        PyErr_SetString(PyExc_TypeError, "state is DECLINE, WAIT or SEND");
        return -1;
    }
    state = PyLong_AsLong(value);
    if (state < OUT_DECLINE || state > OUT_SEND) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "state is DECLINE, WAIT or SEND");
        return -1;
    }
    WL_LOCK();
    self->state = (int)state;
    WL_UNLOCK();
    return 0;
}

static PyObject *Outbound_get_packets_out(OutboundObject *self, void *Py_UNUSED(closure))
{
    uint64_t value;
    WL_LOCK();
    value = self->packets_out;
    WL_UNLOCK();
    return PyLong_FromUnsignedLongLong(value);
}

static PyMethodDef Outbound_methods[] = {
    {"target", (PyCFunction)(void (*)(void))Outbound_target, METH_FASTCALL,
     "target(socket_tag, tx, address): the pump's socket, the SRTP session and the peer."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Outbound_getset[] = {
    {"state", (getter)Outbound_get_state, (setter)Outbound_set_state,
     "SEND: the pump sends here; WAIT: it skips this leg (connecting); DECLINE: a packet "
     "with a destination here goes up to Python.",
     NULL},
    {"packets_out", (getter)Outbound_get_packets_out, NULL, "Packets the pump sent here.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject OutboundType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._native.Outbound",
    .tp_basicsize = sizeof(OutboundObject),
    .tp_dealloc = (destructor)Outbound_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Outbound(sent=None)\n--\n\n"
              "A leg's sending side for the pump: its socket, SRTP session, peer address,\n"
              "state, and the SentLog of its transport-wide numbers (None: no transport-cc).",
    .tp_methods = Outbound_methods,
    .tp_getset = Outbound_getset,
    .tp_new = Outbound_new,
};

/* ---- Inbound ------------------------------------------------------------------ */

typedef struct {
    StreamObject *stream;
    OutboundObject *out;
    wl_plan plan;
} route_destination;

typedef struct {
    int used;
    uint32_t ssrc;
    uint8_t payload_type;
    uint64_t source_key;
    SessionObject *rx;
    int count;
    route_destination destinations[ROUTE_DESTINATIONS];
} route;

typedef struct {
    PyObject_HEAD
    uint64_t packets_in, bytes_in, packets_at_once, arrivals_dropped;
    int64_t last_rtp_ns;
    int transport_cc_id; /* 0: none */
    TallyObject *tally;
    unsigned arrivals_head, arrivals_count;
    uint16_t arrival_seq[ARRIVALS];
    int64_t arrival_us[ARRIVALS];
    route routes[ROUTES];
} InboundObject;

static PyTypeObject InboundType;

static PyObject *Inbound_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"tally", "transport_cc_id", NULL};
    PyObject *tally;
    int transport_cc_id = 0;
    InboundObject *self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!|i:Inbound", keywords, &TallyType, &tally,
                                     &transport_cc_id))
        return NULL;
    if (transport_cc_id < 0 || transport_cc_id > 14) {
        PyErr_SetString(PyExc_ValueError, "transport_cc_id must be 0-14");
        return NULL;
    }
    self = (InboundObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(tally);
    self->tally = (TallyObject *)tally;
    self->transport_cc_id = transport_cc_id;
    return (PyObject *)self;
}

/* Take a route's references out (locked); the caller drops them unlocked. */
static int route_unlink(route *r, PyObject **refs)
{
    int n = 0;
    if (!r->used)
        return 0;
    refs[n++] = (PyObject *)r->rx;
    for (int i = 0; i < r->count; i++) {
        refs[n++] = (PyObject *)r->destinations[i].stream;
        refs[n++] = (PyObject *)r->destinations[i].out;
    }
    memset(r, 0, sizeof *r);
    return n;
}

static void inbound_clear(InboundObject *self, int has_ssrc, uint32_t ssrc)
{
    PyObject *refs[ROUTES * (1 + 2 * ROUTE_DESTINATIONS)];
    int n = 0;
    WL_LOCK();
    for (int i = 0; i < ROUTES; i++)
        if (!has_ssrc || self->routes[i].ssrc == ssrc)
            n += route_unlink(&self->routes[i], refs + n);
    WL_UNLOCK();
    for (int i = 0; i < n; i++)
        Py_DECREF(refs[i]);
}

static void Inbound_dealloc(InboundObject *self)
{
    inbound_clear(self, 0, 0);
    Py_XDECREF(self->tally);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Arrival of a transport-wide number (locked). */
static void inbound_arrival(InboundObject *self, uint16_t seq, int64_t at_us)
{
    unsigned at;
    if (self->arrivals_count == ARRIVALS) {
        self->arrivals_dropped++;
        return;
    }
    at = (self->arrivals_head + self->arrivals_count) % ARRIVALS;
    self->arrival_seq[at] = seq;
    self->arrival_us[at] = at_us;
    self->arrivals_count++;
}

/* route(ssrc, payload_type, source_key, rx, [(stream, outbound, plan)]) */
static PyObject *Inbound_route(InboundObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long ssrc, source_key;
    long payload_type;
    PyObject *list, *refs[1 + 2 * ROUTE_DESTINATIONS];
    route fresh, *slot = NULL;
    Py_ssize_t count;
    int n = 0;
    if (nargs != 5 || !PyLong_CheckExact(args[0]) || !PyLong_CheckExact(args[1]) ||
        !PyLong_CheckExact(args[2]) || !PyObject_TypeCheck(args[3], &SessionType) ||
        !PyList_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "route(ssrc, payload_type, source_key, rx, [(stream, outbound, plan)])");
        return NULL;
    }
    ssrc = PyLong_AsUnsignedLongLong(args[0]);
    payload_type = PyLong_AsLong(args[1]);
    source_key = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (ssrc > 0xFFFFFFFFull || payload_type < 0 || payload_type > 127 || source_key == 0) {
        PyErr_SetString(PyExc_ValueError, "ssrc, payload type or source key out of range");
        return NULL;
    }
    list = args[4];
    count = PyList_GET_SIZE(list);
    if (count < 1 || count > ROUTE_DESTINATIONS) {
        PyErr_Format(PyExc_ValueError, "1-%d destinations", ROUTE_DESTINATIONS);
        return NULL;
    }
    memset(&fresh, 0, sizeof fresh);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3 ||
            !PyObject_TypeCheck(PyTuple_GET_ITEM(item, 0), &StreamType) ||
            !PyObject_TypeCheck(PyTuple_GET_ITEM(item, 1), &OutboundType) ||
            !PyObject_TypeCheck(PyTuple_GET_ITEM(item, 2), &PlanType)) {
            PyErr_SetString(PyExc_TypeError, "a destination is (Stream, Outbound, Plan)");
            return NULL;
        }
        fresh.destinations[i].stream = (StreamObject *)PyTuple_GET_ITEM(item, 0);
        fresh.destinations[i].out = (OutboundObject *)PyTuple_GET_ITEM(item, 1);
        fresh.destinations[i].plan = ((PlanObject *)PyTuple_GET_ITEM(item, 2))->plan;
    }
    fresh.used = 1;
    fresh.ssrc = (uint32_t)ssrc;
    fresh.payload_type = (uint8_t)payload_type;
    fresh.source_key = source_key;
    fresh.rx = (SessionObject *)args[3];
    fresh.count = (int)count;
    Py_INCREF(fresh.rx);
    for (int i = 0; i < fresh.count; i++) {
        Py_INCREF(fresh.destinations[i].stream);
        Py_INCREF(fresh.destinations[i].out);
    }
    WL_LOCK();
    for (int i = 0; i < ROUTES && slot == NULL; i++)
        if (self->routes[i].used && self->routes[i].ssrc == fresh.ssrc &&
            self->routes[i].payload_type == fresh.payload_type)
            slot = &self->routes[i];
    for (int i = 0; i < ROUTES && slot == NULL; i++)
        if (!self->routes[i].used)
            slot = &self->routes[i];
    if (slot != NULL) {
        n = route_unlink(slot, refs);
        *slot = fresh;
    } else {
        n = route_unlink(&fresh, refs); /* full: this one is not kept */
    }
    WL_UNLOCK();
    for (int i = 0; i < n; i++)
        Py_DECREF(refs[i]);
    return PyBool_FromLong(slot != NULL);
}

static PyObject *Inbound_clear_routes(InboundObject *self, PyObject *const *args,
                                      Py_ssize_t nargs)
{
    unsigned long long ssrc = 0;
    if (nargs > 1 || (nargs == 1 && args[0] != Py_None && !PyLong_CheckExact(args[0]))) {
        PyErr_SetString(PyExc_TypeError, "clear_routes(ssrc=None)");
        return NULL;
    }
    if (nargs == 1 && args[0] != Py_None) {
        ssrc = PyLong_AsUnsignedLongLong(args[0]);
        if (PyErr_Occurred())
            return NULL;
    }
    inbound_clear(self, nargs == 1 && args[0] != Py_None, (uint32_t)ssrc);
    Py_RETURN_NONE;
}

static PyObject *Inbound_arrived(InboundObject *self, PyObject *size)
{
    long long value;
    if (!PyLong_CheckExact(size)) {
        PyErr_SetString(PyExc_TypeError, "arrived(size)");
        return NULL;
    }
    value = PyLong_AsLongLong(size);
    if (value == -1 && PyErr_Occurred())
        return NULL;
    WL_LOCK();
    self->packets_in++;
    self->bytes_in += (uint64_t)(value < 0 ? 0 : value);
    self->last_rtp_ns = monotonic_ns();
    WL_UNLOCK();
    Py_RETURN_NONE;
}

static PyObject *Inbound_record(InboundObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long seq, at_us;
    if (nargs != 2 || !PyLong_CheckExact(args[0]) || !PyLong_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "record(sequence_number, at_us)");
        return NULL;
    }
    seq = PyLong_AsLongLong(args[0]);
    at_us = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (seq < 0 || seq > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "a 16-bit sequence number");
        return NULL;
    }
    WL_LOCK();
    inbound_arrival(self, (uint16_t)seq, at_us);
    WL_UNLOCK();
    Py_RETURN_NONE;
}

static PyObject *Inbound_take_arrivals(InboundObject *self, PyObject *Py_UNUSED(ignored))
{
    static uint16_t seq[ARRIVALS];
    static int64_t at_us[ARRIVALS];
    unsigned count;
    PyObject *list;
    /* copied out under the lock (the GIL makes the static buffers this call's) */
    WL_LOCK();
    count = self->arrivals_count;
    for (unsigned i = 0; i < count; i++) {
        unsigned at = (self->arrivals_head + i) % ARRIVALS;
        seq[i] = self->arrival_seq[at];
        at_us[i] = self->arrival_us[at];
    }
    self->arrivals_head = (self->arrivals_head + count) % ARRIVALS;
    self->arrivals_count = 0;
    WL_UNLOCK();
    list = PyList_New(count);
    if (list == NULL)
        return NULL;
    for (unsigned i = 0; i < count; i++) {
        PyObject *pair = Py_BuildValue("(iL)", (int)seq[i], (long long)at_us[i]);
        if (pair == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, pair);
    }
    return list;
}

enum { I_PACKETS_IN, I_BYTES_IN, I_AT_ONCE, I_ARRIVALS_DROPPED, I_ROUTES };

static PyObject *Inbound_get(InboundObject *self, void *closure)
{
    uint64_t value = 0;
    WL_LOCK();
    switch ((int)(intptr_t)closure) {
    case I_PACKETS_IN:
        value = self->packets_in;
        break;
    case I_BYTES_IN:
        value = self->bytes_in;
        break;
    case I_AT_ONCE:
        value = self->packets_at_once;
        break;
    case I_ARRIVALS_DROPPED:
        value = self->arrivals_dropped;
        break;
    default:
        for (int i = 0; i < ROUTES; i++)
            value += self->routes[i].used != 0;
        break;
    }
    WL_UNLOCK();
    return PyLong_FromUnsignedLongLong(value);
}

static PyObject *Inbound_get_last_rtp_at(InboundObject *self, void *Py_UNUSED(closure))
{
    int64_t ns;
    WL_LOCK();
    ns = self->last_rtp_ns;
    WL_UNLOCK();
    return PyFloat_FromDouble((double)ns / 1e9);
}

static PyMethodDef Inbound_methods[] = {
    {"route", (PyCFunction)(void (*)(void))Inbound_route, METH_FASTCALL,
     "route(ssrc, payload_type, source_key, rx, [(stream, outbound, plan)]) -> kept: the "
     "pump forwards this source stream's packets (a full table keeps none)."},
    {"clear_routes", (PyCFunction)(void (*)(void))Inbound_clear_routes, METH_FASTCALL,
     "clear_routes(ssrc=None): the pump forwards none of them (or of this SSRC) any more."},
    {"arrived", (PyCFunction)Inbound_arrived, METH_O,
     "arrived(size): a packet of size bytes arrived on the Python path."},
    {"record", (PyCFunction)(void (*)(void))Inbound_record, METH_FASTCALL,
     "record(sequence_number, at_us): a transport-wide number arrived (Python path)."},
    {"take_arrivals", (PyCFunction)Inbound_take_arrivals, METH_NOARGS,
     "[(sequence_number, at_us)] recorded since the last take, in order."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Inbound_getset[] = {
    {"packets_in", (getter)Inbound_get, NULL, "RTP packets that arrived.", (void *)I_PACKETS_IN},
    {"bytes_in", (getter)Inbound_get, NULL, "Their bytes (decrypted).", (void *)I_BYTES_IN},
    {"packets_at_once", (getter)Inbound_get, NULL, "Those the pump forwarded.",
     (void *)I_AT_ONCE},
    {"arrivals_dropped", (getter)Inbound_get, NULL, "Arrivals not kept (the log was full).",
     (void *)I_ARRIVALS_DROPPED},
    {"routes", (getter)Inbound_get, NULL, "Routes installed.", (void *)I_ROUTES},
    {"last_rtp_at", (getter)Inbound_get_last_rtp_at, NULL,
     "When the last RTP packet arrived (time.monotonic(); 0.0: none yet).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject InboundType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._native.Inbound",
    .tp_basicsize = sizeof(InboundObject),
    .tp_dealloc = (destructor)Inbound_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Inbound(tally, transport_cc_id=0)\n--\n\n"
              "A leg's receiving side for the pump: its counters, the transport-wide\n"
              "numbers that arrived, and the routes of its source streams.",
    .tp_methods = Inbound_methods,
    .tp_getset = Inbound_getset,
    .tp_new = Inbound_new,
};

/* ---- Pump --------------------------------------------------------------------- */

typedef struct {
    int used;
    int fd; /* the pump's own (dup) */
    uint32_t generation;
    InboundObject *inbound;
} pump_socket;

typedef struct {
    long long tag;
    uint16_t length;
    socklen_t address_length;
    struct sockaddr_storage address;
    uint8_t data[PUMP_SLOT];
} queued;

typedef struct PumpObject {
    PyObject_HEAD
    pthread_t thread;
    int running;
    int epoll_fd, wake_fd, stop_fd;
    pump_socket sockets[PUMP_SOCKETS];
    queued *queue;
    unsigned queue_head, queue_count;
    int notified;
    wl_recv_batch receive;
    wl_send_queue send;
    uint8_t plain[PUMP_SLOT];
    wl_header headers[ROUTE_DESTINATIONS];
    uint64_t read, forwarded, queued_up, queue_dropped, refused, truncated, sent_packets,
        read_errors, wakeups;
} PumpObject;

static PyTypeObject PumpType;

static long long socket_tag(const PumpObject *p, unsigned index)
{
    return ((long long)p->sockets[index].generation << 16) | index;
}

/* The pump's fd of a socket tag, or -1 (locked). */
static int socket_fd(const PumpObject *p, long long tag)
{
    unsigned index;
    if (tag < 0)
        return -1;
    index = (unsigned)(tag & 0xFFFF);
    if (index >= PUMP_SOCKETS || !p->sockets[index].used ||
        p->sockets[index].generation != (uint32_t)(tag >> 16))
        return -1;
    return p->sockets[index].fd;
}

static void enqueue(PumpObject *p, long long tag, const uint8_t *data, size_t length,
                    const struct sockaddr_storage *address, socklen_t address_length)
{
    queued *q;
    if (p->queue_count == PUMP_QUEUE) {
        p->queue_dropped++;
        return;
    }
    q = &p->queue[(p->queue_head + p->queue_count) % PUMP_QUEUE];
    q->tag = tag;
    q->length = (uint16_t)length;
    memcpy(q->data, data, length);
    q->address_length = address_length;
    memcpy(&q->address, address, sizeof q->address);
    p->queue_count++;
    p->queued_up++;
}

/* fastpath.transport_sequence: the number under id (one-byte extensions), or -1. */
static int transport_number(const uint8_t *d, size_t length, int id)
{
    size_t end, at;
    if (length < 16 || (d[0] & 0x1F) != 0x10 || d[12] != 0xBE || d[13] != 0xDE)
        return -1;
    end = 16 + 4 * (((size_t)d[14] << 8) | d[15]);
    if (end > length)
        return -1;
    at = 16;
    while (at < end) {
        int element, size;
        if (d[at] == 0) {
            at++;
            continue;
        }
        element = d[at] >> 4;
        size = (d[at] & 0x0F) + 1;
        if (element == 15 || at + 1 + (size_t)size > end)
            return -1;
        if (element == id && size == 2)
            return (d[at + 1] << 8) | d[at + 2];
        at += 1 + (size_t)size;
    }
    return -1;
}

/* Relay._forward_now on the pump: 1 when the packet was forwarded (or refused
 * and dropped, as aiortc drops it), 0 when Python must take it (locked). */
static int pump_forward(PumpObject *p, InboundObject *in, const uint8_t *data, size_t length)
{
    route *r = NULL;
    uint32_t ssrc;
    uint8_t payload_type;
    int fds[ROUTE_DESTINATIONS], sending = 0, status, number;
    size_t plain_length;
    int64_t now_ns, now_us;

    if (length < 12 || data[0] < 128 || data[0] > 191 || (data[1] > 191 && data[1] < 209))
        return 0;
    ssrc = ((uint32_t)data[8] << 24) | ((uint32_t)data[9] << 16) | ((uint32_t)data[10] << 8) |
           data[11];
    payload_type = data[1] & 0x7F;
    for (int i = 0; i < ROUTES && r == NULL; i++)
        if (in->routes[i].used && in->routes[i].ssrc == ssrc &&
            in->routes[i].payload_type == payload_type)
            r = &in->routes[i];
    if (r == NULL || length > PUMP_SLOT)
        return 0;
    /* Relay._steady_takers, then every destination's header planned */
    for (int i = 0; i < r->count; i++) {
        route_destination *d = &r->destinations[i];
        fds[i] = -1;
        if (d->out->state == OUT_DECLINE)
            return 0;
        if (d->out->state == OUT_WAIT)
            continue;
        if (d->stream->steady_key != r->source_key || d->out->tx == NULL)
            return 0;
        fds[i] = socket_fd(p, d->out->socket_tag);
        if (fds[i] < 0)
            return 0;
        if (!wl_rtp_plan(data, length, &d->plan, &p->headers[i]))
            return 0;
        sending++;
    }
    plain_length = length;
    memcpy(p->plain, data, length);
    status = wl_srtp_unprotect(r->rx->srtp, p->plain, &plain_length);
    if (status != WL_OK) {
        p->refused++;
        return 1;
    }
    now_ns = monotonic_ns();
    now_us = now_ns / 1000;
    in->packets_in++;
    in->bytes_in += plain_length;
    in->last_rtp_ns = now_ns;
    in->packets_at_once++;
    if (in->transport_cc_id != 0) {
        number = transport_number(data, length, in->transport_cc_id);
        if (number >= 0)
            inbound_arrival(in, (uint16_t)number, now_us);
    }
    for (int i = 0; i < r->count && sending > 0; i++) {
        route_destination *d = &r->destinations[i];
        StreamObject *s = d->stream;
        wl_header *h = &p->headers[i];
        wl_rewrite rewrite;
        uint8_t *slot;
        size_t out_length;
        int numbered = d->plan.transport_id != 0 && d->out->sent != NULL;
        if (fds[i] < 0)
            continue;
        slot = wl_send_queue_next(&p->send);
        if (slot == NULL) {
            wl_send_queue_flush(&p->send);
            slot = wl_send_queue_next(&p->send);
            if (slot == NULL)
                continue;
        }
        rewrite.head = h->head;
        rewrite.head_length = h->head_length;
        rewrite.payload_at = h->payload_at;
        rewrite.transport_at = h->transport_at;
        rewrite.seq_offset = s->seq_offset;
        rewrite.ts_offset = s->ts_offset;
        rewrite.transport_sequence = numbered ? (uint16_t)d->out->sent->next : 0;
        if (!wl_rtp_rewrite_valid(&rewrite) ||
            !wl_rtp_rewrite(p->plain, plain_length, &rewrite, slot,
                            PUMP_SLOT - WL_SRTP_MAX_TRAILER, &out_length))
            continue;
        /* OutboundStream.sent_steady: the number taken, the packet kept for NACKs */
        if (numbered)
            sent_assign(d->out->sent, (int64_t)(plain_length - h->payload_at) + 24, now_us);
        stream_keep(s, (((unsigned)slot[2] << 8) | slot[3]) % HISTORY, slot, out_length);
        stream_sent(s, (uint16_t)(((unsigned)slot[2] << 8) | slot[3]),
                    ((uint32_t)slot[4] << 24) | ((uint32_t)slot[5] << 16) |
                        ((uint32_t)slot[6] << 8) | slot[7],
                    now_ns);
        in->tally->packets++;
        in->tally->bytes += out_length;
        d->out->packets_out++;
        if (wl_srtp_protect(d->out->tx->srtp, slot, &out_length, PUMP_SLOT) != WL_OK)
            continue;
        wl_send_queue_commit(&p->send, out_length, fds[i], (const struct sockaddr *)&d->out->address,
                             d->out->address_length);
        p->forwarded++;
    }
    OPENSSL_cleanse(p->plain, plain_length);
    return 1;
}

static void pump_read(PumpObject *p, unsigned index)
{
    pump_socket *s = &p->sockets[index];
    long long tag = socket_tag(p, index);
    int received = wl_recv_batch_receive(&p->receive, s->fd, PUMP_READ_BATCH);
    if (received < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            p->read_errors++;
        return;
    }
    for (int i = 0; i < received; i++) {
        const struct msghdr *h = &p->receive.messages[i].msg_hdr;
        const uint8_t *data = p->receive.slots + (size_t)i * p->receive.slot_size;
        size_t length = p->receive.messages[i].msg_len;
        p->read++;
        if (h->msg_flags & MSG_TRUNC) {
            p->truncated++;
            continue;
        }
        if (s->inbound != NULL && pump_forward(p, s->inbound, data, length))
            continue;
        enqueue(p, tag, data, length, &p->receive.addresses[i], h->msg_namelen);
    }
}

static void *pump_main(void *argument)
{
    PumpObject *p = argument;
    struct epoll_event events[64];
    int stop = 0;
    while (!stop) {
        int n = epoll_wait(p->epoll_fd, events, 64, -1), wake = 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        WL_LOCK();
        p->wakeups++;
        for (int i = 0; i < n; i++) {
            uint64_t key = events[i].data.u64;
            unsigned index;
            if (key == STOP_KEY) {
                stop = 1;
                continue;
            }
            index = (unsigned)(key & 0xFFFF);
            if (index < PUMP_SOCKETS && p->sockets[index].used &&
                p->sockets[index].generation == (uint32_t)(key >> 16))
                pump_read(p, index);
        }
        /* sent before the lock goes: a socket removed after it is never written to */
        p->sent_packets += wl_send_queue_flush(&p->send);
        if (p->queue_count > 0 && !p->notified) {
            p->notified = 1;
            wake = 1;
        }
        WL_UNLOCK();
        if (wake) {
            uint64_t one = 1;
            ssize_t written = write(p->wake_fd, &one, sizeof one);
            (void)written; /* a full counter still wakes Python */
        }
    }
    return NULL;
}

static void pump_stop(PumpObject *p)
{
    if (p->running) {
        uint64_t one = 1;
        ssize_t written = write(p->stop_fd, &one, sizeof one);
        (void)written;
        Py_BEGIN_ALLOW_THREADS
        pthread_join(p->thread, NULL);
        Py_END_ALLOW_THREADS
        p->running = 0;
    }
}

static void pump_forget_sockets(PumpObject *p)
{
    PyObject *refs[PUMP_SOCKETS];
    int n = 0;
    WL_LOCK();
    for (unsigned i = 0; i < PUMP_SOCKETS; i++)
        if (p->sockets[i].used) {
            close(p->sockets[i].fd);
            if (p->sockets[i].inbound != NULL)
                refs[n++] = (PyObject *)p->sockets[i].inbound;
            p->sockets[i].used = 0;
            p->sockets[i].inbound = NULL;
            p->sockets[i].generation++;
        }
    WL_UNLOCK();
    for (int i = 0; i < n; i++)
        Py_DECREF(refs[i]);
}

static void Pump_dealloc(PumpObject *self)
{
    pump_stop(self);
    pump_forget_sockets(self);
    if (self->epoll_fd >= 0)
        close(self->epoll_fd);
    if (self->wake_fd >= 0)
        close(self->wake_fd);
    if (self->stop_fd >= 0)
        close(self->stop_fd);
    free(self->queue);
    wl_recv_batch_free(&self->receive);
    wl_send_queue_free(&self->send);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Pump_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {NULL};
    PumpObject *self;
    struct epoll_event stop_event;
    int error;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, ":Pump", keywords))
        return NULL;
    self = (PumpObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->epoll_fd = self->wake_fd = self->stop_fd = -1;
    self->queue = malloc(sizeof *self->queue * PUMP_QUEUE);
    if (self->queue == NULL || !wl_recv_batch_init(&self->receive, PUMP_READ_BATCH, PUMP_SLOT) ||
        !wl_send_queue_init(&self->send, PUMP_SEND_BATCH, PUMP_SLOT)) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    self->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    self->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (self->epoll_fd < 0 || self->wake_fd < 0 || self->stop_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    memset(&stop_event, 0, sizeof stop_event);
    stop_event.events = EPOLLIN;
    stop_event.data.u64 = STOP_KEY;
    if (epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, self->stop_fd, &stop_event) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    error = pthread_create(&self->thread, NULL, pump_main, self);
    if (error != 0) {
        errno = error;
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    self->running = 1;
    pthread_setname_np(self->thread, "wl-pump"); /* as top -H and /proc show it */
    return (PyObject *)self;
}

static PyObject *Pump_fileno(PumpObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->wake_fd);
}

/* add_socket(fd, inbound=None) -> tag: the pump reads the socket from now on. */
static PyObject *Pump_add_socket(PumpObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long fd;
    int own;
    PyObject *inbound = Py_None;
    struct epoll_event event;
    unsigned index = PUMP_SOCKETS;
    long long tag;
    if (nargs < 1 || nargs > 2 || !PyLong_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "add_socket(fd, inbound=None)");
        return NULL;
    }
    if (nargs == 2)
        inbound = args[1];
    if (inbound != Py_None && !PyObject_TypeCheck(inbound, &InboundType)) {
        PyErr_SetString(PyExc_TypeError, "inbound must be an Inbound or None");
        return NULL;
    }
    if (!self->running) {
        PyErr_SetString(PyExc_RuntimeError, "the pump is closed");
        return NULL;
    }
    fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > 0x7FFFFFFF) {
        PyErr_SetString(PyExc_ValueError, "not a file descriptor");
        return NULL;
    }
    /* Its own descriptor: whatever closes Python's, the pump never writes to a
     * number that another socket has taken since. */
    own = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (inbound != Py_None)
        Py_INCREF(inbound);
    WL_LOCK();
    for (unsigned i = 0; i < PUMP_SOCKETS; i++)
        if (!self->sockets[i].used) {
            index = i;
            break;
        }
    if (index < PUMP_SOCKETS) {
        self->sockets[index].used = 1;
        self->sockets[index].fd = own;
        self->sockets[index].generation++;
        self->sockets[index].inbound = inbound == Py_None ? NULL : (InboundObject *)inbound;
        tag = socket_tag(self, index);
        memset(&event, 0, sizeof event);
        event.events = EPOLLIN;
        event.data.u64 = (uint64_t)tag;
        if (epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, own, &event) < 0) {
            int saved = errno;
            self->sockets[index].used = 0;
            self->sockets[index].inbound = NULL;
            WL_UNLOCK();
            close(own);
            Py_XDECREF(inbound == Py_None ? NULL : inbound);
            errno = saved;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    WL_UNLOCK();
    if (index == PUMP_SOCKETS) {
        close(own);
        Py_XDECREF(inbound == Py_None ? NULL : inbound);
        PyErr_SetString(PyExc_OverflowError, "the pump reads 1024 sockets at most");
        return NULL;
    }
    return PyLong_FromLongLong(tag);
}

static PyObject *Pump_remove_socket(PumpObject *self, PyObject *arg)
{
    long long tag;
    int fd;
    PyObject *inbound = NULL;
    if (!PyLong_CheckExact(arg)) {
        PyErr_SetString(PyExc_TypeError, "remove_socket(tag)");
        return NULL;
    }
    tag = PyLong_AsLongLong(arg);
    if (tag == -1 && PyErr_Occurred())
        return NULL;
    WL_LOCK();
    fd = socket_fd(self, tag);
    if (fd >= 0) {
        unsigned index = (unsigned)(tag & 0xFFFF);
        epoll_ctl(self->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        inbound = (PyObject *)self->sockets[index].inbound;
        self->sockets[index].used = 0;
        self->sockets[index].inbound = NULL;
    }
    WL_UNLOCK();
    Py_XDECREF(inbound);
    return PyBool_FromLong(fd >= 0);
}

/* take(max) -> [(tag, datagram, address)]: what the thread left for Python. */
static PyObject *Pump_take(PumpObject *self, PyObject *arg)
{
    long max;
    PyObject *list;
    uint64_t counter;
    ssize_t got;
    if (!PyLong_CheckExact(arg)) {
        PyErr_SetString(PyExc_TypeError, "take(max)");
        return NULL;
    }
    max = PyLong_AsLong(arg);
    if (max == -1 && PyErr_Occurred())
        return NULL;
    if (max < 1 || max > PUMP_QUEUE) {
        PyErr_SetString(PyExc_ValueError, "take 1-4096 at most");
        return NULL;
    }
    got = read(self->wake_fd, &counter, sizeof counter);
    (void)got; /* EAGAIN: nothing signalled, the queue may still hold some */
    list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (;;) {
        queued one;
        PyObject *address, *item;
        int more;
        WL_LOCK();
        if (self->queue_count == 0 || PyList_GET_SIZE(list) >= max) {
            more = self->queue_count > 0;
            self->notified = more;
            WL_UNLOCK();
            if (more) {
                uint64_t again = 1;
                ssize_t written = write(self->wake_fd, &again, sizeof again);
                (void)written; /* the rest on the next wake-up */
            }
            break;
        }
        memcpy(&one, &self->queue[self->queue_head], offsetof(queued, data));
        memcpy(one.data, self->queue[self->queue_head].data, one.length);
        self->queue_head = (self->queue_head + 1) % PUMP_QUEUE;
        self->queue_count--;
        WL_UNLOCK();
        address = wl_address_tuple(&one.address, one.address_length);
        if (address == NULL)
            goto failed;
        item = Py_BuildValue("(Ly#N)", one.tag, (const char *)one.data, (Py_ssize_t)one.length,
                             address);
        if (item == NULL)
            goto failed;
        if (PyList_Append(list, item) < 0) {
            Py_DECREF(item);
            goto failed;
        }
        Py_DECREF(item);
    }
    return list;
failed:
    Py_DECREF(list);
    return NULL;
}

static PyObject *Pump_close(PumpObject *self, PyObject *Py_UNUSED(ignored))
{
    pump_stop(self);
    pump_forget_sockets(self);
    Py_RETURN_NONE;
}

static PyObject *Pump_stats(PumpObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *stats;
    WL_LOCK();
    stats = Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsKsKsi}", "read", self->read, "forwarded", self->forwarded,
        "queued", self->queued_up, "queue_dropped", self->queue_dropped, "refused", self->refused,
        "truncated", self->truncated, "sent", self->sent_packets, "send_dropped",
        (unsigned long long)self->send.dropped, "send_failed",
        (unsigned long long)self->send.failed, "read_errors", self->read_errors, "wakeups",
        self->wakeups, "running", self->running);
    WL_UNLOCK();
    return stats;
}

static PyMethodDef Pump_methods[] = {
    {"fileno", (PyCFunction)Pump_fileno, METH_NOARGS,
     "The eventfd that is readable while datagrams wait for take()."},
    {"add_socket", (PyCFunction)(void (*)(void))Pump_add_socket, METH_FASTCALL,
     "add_socket(fd, inbound=None) -> tag: the pump reads this socket (a dup of fd) from now "
     "on; its RTP goes by inbound's routes."},
    {"remove_socket", (PyCFunction)Pump_remove_socket, METH_O,
     "remove_socket(tag) -> whether it was there: never read or written by the pump again."},
    {"take", (PyCFunction)Pump_take, METH_O,
     "take(max) -> [(tag, datagram, address)] the pump left for Python, oldest first."},
    {"close", (PyCFunction)Pump_close, METH_NOARGS, "Stop the thread and forget the sockets."},
    {"stats", (PyCFunction)Pump_stats, METH_NOARGS, "What the pump did and dropped."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PumpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._native.Pump",
    .tp_basicsize = sizeof(PumpObject),
    .tp_dealloc = (destructor)Pump_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Pump()\n--\n\n"
              "A thread that reads sockets (epoll, recvmmsg), forwards steady packets by\n"
              "the Inbound routes in C and queues everything else for take().",
    .tp_methods = Pump_methods,
    .tp_new = Pump_new,
};

int wl_pump_add_types(PyObject *module)
{
    if (PyType_Ready(&StreamType) < 0 || PyType_Ready(&SentLogType) < 0 ||
        PyType_Ready(&TallyType) < 0 || PyType_Ready(&OutboundType) < 0 ||
        PyType_Ready(&InboundType) < 0 || PyType_Ready(&PumpType) < 0)
        return 0;
    return PyModule_AddObjectRef(module, "Stream", (PyObject *)&StreamType) == 0 &&
           PyModule_AddObjectRef(module, "SentLog", (PyObject *)&SentLogType) == 0 &&
           PyModule_AddObjectRef(module, "Tally", (PyObject *)&TallyType) == 0 &&
           PyModule_AddObjectRef(module, "Outbound", (PyObject *)&OutboundType) == 0 &&
           PyModule_AddObjectRef(module, "Inbound", (PyObject *)&InboundType) == 0 &&
           PyModule_AddObjectRef(module, "Pump", (PyObject *)&PumpType) == 0 &&
           PyModule_AddIntConstant(module, "DECLINE", OUT_DECLINE) == 0 &&
           PyModule_AddIntConstant(module, "WAIT", OUT_WAIT) == 0 &&
           PyModule_AddIntConstant(module, "SEND", OUT_SEND) == 0 &&
           PyModule_AddIntConstant(module, "HISTORY", HISTORY) == 0;
}
