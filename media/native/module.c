/* media._native: the relay's per-packet work in C (media/_native.pyi has the
 * Python face, media/datapath.py says whether it is there).
 *
 *  Session    SRTP/SRTCP with pylibsrtp.Session's API and bytes (wl_srtp.c)
 *  Address    a peer's UDP address, parsed once
 *  Plan       fastpath.plan_header for one destination (wl_rtp.c)
 *  Forwarder  unprotect once, rewrite and protect for each destination,
 *             queue; flush with sendmmsg; drain a socket with recvmmsg
 *
 * Nothing here calls back into Python while it works: arguments must be of
 * the exact types documented (no __index__, no buffer protocol), so the
 * objects it reads cannot change under it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/crypto.h>

#include "objects.h"
#include "wl_batch.h"

/* pylibsrtp's own buffer: 1500 octets, less the room protect may need. */
#define PYLIBSRTP_BUFFER 1500
#define PYLIBSRTP_TRAILER 144
#define PYLIBSRTP_RTCP_TRAILER 148
/* A forwarded datagram: received or sent, at most this (slots of the queue). */
#define SLOT_SIZE 2048
#define MAX_DESTINATIONS 64
#define MAX_BATCH 1024
#define FORWARD_DECLINED (-1)
#define FORWARD_REFUSED (-2)

static PyObject *NativeError;

/* ---- Session ------------------------------------------------------------------ */


static PyObject *raise_status(int status)
{
    PyErr_SetString(NativeError, wl_srtp_status_text(status));
    return NULL;
}

static PyObject *Session_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"key", "profile", "window_size", "allow_repeat_tx", NULL};
    PyObject *key;
    int profile = WL_AES128_CM_SHA1_80, allow_repeat_tx = 0, status;
    long window_size = 128;
    size_t needed;
    SessionObject *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|ilp:Session", keywords, &key, &profile,
                                     &window_size, &allow_repeat_tx))
        return NULL;
    needed = wl_srtp_key_length(profile);
    if (needed == 0)
        return raise_status(WL_BAD_PARAM);
    if (!PyBytes_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "key must be bytes");
        return NULL;
    }
    if ((size_t)PyBytes_GET_SIZE(key) < needed) {
        PyErr_Format(PyExc_ValueError, "key must contain at least %d bytes", (int)needed);
        return NULL;
    }
    if (window_size < 0)
        return raise_status(WL_BAD_PARAM);
    self = (SessionObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->profile = profile;
    self->srtp = wl_srtp_new(profile, (const uint8_t *)PyBytes_AS_STRING(key),
                             (size_t)PyBytes_GET_SIZE(key), (unsigned long)window_size,
                             allow_repeat_tx, &status);
    if (self->srtp == NULL) {
        Py_DECREF(self);
        return raise_status(status);
    }
    return (PyObject *)self;
}

static void Session_dealloc(SessionObject *self)
{
    wl_srtp_free(self->srtp);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

enum { PROTECT, PROTECT_RTCP, UNPROTECT, UNPROTECT_RTCP };

static PyObject *session_process(SessionObject *self, PyObject *packet, int what)
{
    uint8_t buffer[PYLIBSRTP_BUFFER];
    Py_ssize_t length;
    size_t room = what == PROTECT        ? PYLIBSRTP_TRAILER
                  : what == PROTECT_RTCP ? PYLIBSRTP_RTCP_TRAILER
                                         : 0;
    size_t size;
    int status;

    if (!PyBytes_Check(packet)) {
        PyErr_SetString(PyExc_TypeError, "packet must be bytes");
        return NULL;
    }
    length = PyBytes_GET_SIZE(packet);
    if ((size_t)length > PYLIBSRTP_BUFFER - room) {
        PyErr_SetString(PyExc_ValueError, "packet is too long");
        return NULL;
    }
    size = (size_t)length;
    memcpy(buffer, PyBytes_AS_STRING(packet), size);
    WL_LOCK(); /* the pump's thread may use the same session */
    switch (what) {
    case PROTECT:
        status = wl_srtp_protect(self->srtp, buffer, &size, sizeof buffer);
        break;
    case PROTECT_RTCP:
        status = wl_srtp_protect_rtcp(self->srtp, buffer, &size, sizeof buffer);
        break;
    case UNPROTECT:
        status = wl_srtp_unprotect(self->srtp, buffer, &size);
        break;
    default:
        status = wl_srtp_unprotect_rtcp(self->srtp, buffer, &size);
        break;
    }
    WL_UNLOCK();
    if (status != WL_OK) {
        OPENSSL_cleanse(buffer, sizeof buffer);
        return raise_status(status);
    }
    packet = PyBytes_FromStringAndSize((const char *)buffer, (Py_ssize_t)size);
    if (what == UNPROTECT || what == UNPROTECT_RTCP)
        OPENSSL_cleanse(buffer, size);
    return packet;
}

static PyObject *Session_protect(SessionObject *self, PyObject *packet)
{
    return session_process(self, packet, PROTECT);
}

static PyObject *Session_protect_rtcp(SessionObject *self, PyObject *packet)
{
    return session_process(self, packet, PROTECT_RTCP);
}

static PyObject *Session_unprotect(SessionObject *self, PyObject *packet)
{
    return session_process(self, packet, UNPROTECT);
}

static PyObject *Session_unprotect_rtcp(SessionObject *self, PyObject *packet)
{
    return session_process(self, packet, UNPROTECT_RTCP);
}

static PyObject *Session_get_profile(SessionObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->profile);
}

static PyObject *Session_get_rtp_overhead(SessionObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(wl_srtp_rtp_overhead(self->srtp));
}

static PyObject *Session_get_rtcp_overhead(SessionObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(wl_srtp_rtcp_overhead(self->srtp));
}

static PyObject *Session_get_streams(SessionObject *self, void *Py_UNUSED(closure))
{
    size_t count;
    WL_LOCK();
    count = wl_srtp_stream_count(self->srtp);
    WL_UNLOCK();
    return PyLong_FromSize_t(count);
}

static PyMethodDef Session_methods[] = {
    {"protect", (PyCFunction)Session_protect, METH_O, "SRTP-protect an RTP packet."},
    {"protect_rtcp", (PyCFunction)Session_protect_rtcp, METH_O,
     "SRTCP-protect an RTCP packet."},
    {"unprotect", (PyCFunction)Session_unprotect, METH_O, "Verify and decrypt an SRTP packet."},
    {"unprotect_rtcp", (PyCFunction)Session_unprotect_rtcp, METH_O,
     "Verify and decrypt an SRTCP packet."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Session_getset[] = {
    {"profile", (getter)Session_get_profile, NULL, "The SRTP profile (libsrtp's number).", NULL},
    {"rtp_overhead", (getter)Session_get_rtp_overhead, NULL,
     "Octets protect adds to an RTP packet.", NULL},
    {"rtcp_overhead", (getter)Session_get_rtcp_overhead, NULL,
     "Octets protect_rtcp adds to an RTCP packet.", NULL},
    {"streams", (getter)Session_get_streams, NULL, "SSRCs the session keeps state for.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._native.Session",
    .tp_basicsize = sizeof(SessionObject),
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Session(key, profile=1, window_size=128, allow_repeat_tx=False)\n--\n\n"
              "An SRTP session keyed with a master key and salt: pylibsrtp.Session's\n"
              "methods, bytes and errors, for one policy matching any SSRC.",
    .tp_methods = Session_methods,
    .tp_getset = Session_getset,
    .tp_new = Session_new,
};

/* ---- Address ------------------------------------------------------------------ */


/* A numeric host and a port as a socket address; 0 with an exception set. */
static int parse_address(PyObject *host, int port, struct sockaddr_storage *out, socklen_t *length)
{
    struct addrinfo hints, *found = NULL;
    const char *text;
    char service[8];
    int error;

    if (!PyUnicode_Check(host)) {
        PyErr_SetString(PyExc_TypeError, "host must be str");
        return 0;
    }
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port must be 0-65535");
        return 0;
    }
    text = PyUnicode_AsUTF8(host);
    if (text == NULL)
        return 0;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(service, sizeof service, "%d", port);
    error = getaddrinfo(text, service, &hints, &found);
    if (error != 0 || found == NULL || found->ai_addrlen > sizeof *out) {
        if (found != NULL)
            freeaddrinfo(found);
        PyErr_Format(PyExc_ValueError, "not a numeric address: %R", host);
        return 0;
    }
    memset(out, 0, sizeof *out);
    memcpy(out, found->ai_addr, found->ai_addrlen);
    *length = (socklen_t)found->ai_addrlen;
    freeaddrinfo(found);
    return 1;
}

static PyObject *Address_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"host", "port", NULL};
    PyObject *host;
    int port;
    AddressObject *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Ui:Address", keywords, &host, &port))
        return NULL;
    self = (AddressObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    if (!parse_address(host, port, &self->address, &self->length)) {
        Py_DECREF(self);
        return NULL;
    }
    Py_INCREF(host);
    self->host = host;
    self->port = port;
    return (PyObject *)self;
}

static void Address_dealloc(AddressObject *self)
{
    Py_XDECREF(self->host);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Address_repr(AddressObject *self)
{
    return PyUnicode_FromFormat("Address(%R, %d)", self->host, self->port);
}

static PyObject *Address_get_host(AddressObject *self, void *Py_UNUSED(closure))
{
    Py_INCREF(self->host);
    return self->host;
}

static PyObject *Address_get_port(AddressObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->port);
}

static PyGetSetDef Address_getset[] = {
    {"host", (getter)Address_get_host, NULL, "The numeric host.", NULL},
    {"port", (getter)Address_get_port, NULL, "The UDP port.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject AddressType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._native.Address",
    .tp_basicsize = sizeof(AddressObject),
    .tp_dealloc = (destructor)Address_dealloc,
    .tp_repr = (reprfunc)Address_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Address(host, port)\n--\n\n"
              "A peer's UDP address (numeric IPv4 or IPv6), parsed once.",
    .tp_getset = Address_getset,
    .tp_new = Address_new,
};

/* ---- Plan --------------------------------------------------------------------- */


static PyObject *Plan_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"kinds",        "abs_send_time_id", "audio_level_id",
                               "transport_id", "payload_type",     "ssrc",
                               "mid_element",  NULL};
    Py_buffer kinds, mid;
    int abs_id, audio_id, transport_id, payload_type;
    unsigned long long ssrc;
    PlanObject *self = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*iiiiKy*:Plan", keywords, &kinds, &abs_id,
                                     &audio_id, &transport_id, &payload_type, &ssrc, &mid))
        return NULL;
    if (kinds.len != 16) {
        PyErr_SetString(PyExc_ValueError, "kinds must be 16 octets (source ids 0-15)");
        goto done;
    }
    for (Py_ssize_t i = 0; i < 16; i++)
        if (((const uint8_t *)kinds.buf)[i] > WL_EXT_SLOW) {
            PyErr_SetString(PyExc_ValueError, "unknown extension kind");
            goto done;
        }
    if (abs_id < 0 || abs_id > 14 || audio_id < 0 || audio_id > 14 || transport_id < 0 ||
        transport_id > 14) {
        PyErr_SetString(PyExc_ValueError, "extension ids must be 0-14");
        goto done;
    }
    if (payload_type < 0 || payload_type > 127 || ssrc > 0xFFFFFFFFull) {
        PyErr_SetString(PyExc_ValueError, "payload type or SSRC out of range");
        goto done;
    }
    if (mid.len > 17) {
        PyErr_SetString(PyExc_ValueError, "mid element longer than 17 octets");
        goto done;
    }
    self = (PlanObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        goto done;
    memcpy(self->plan.kind, kinds.buf, 16);
    self->plan.abs_send_time_id = (uint8_t)abs_id;
    self->plan.audio_level_id = (uint8_t)audio_id;
    self->plan.transport_id = (uint8_t)transport_id;
    self->plan.payload_type = (uint8_t)payload_type;
    self->plan.ssrc = (uint32_t)ssrc;
    memcpy(self->plan.mid_element, mid.buf, (size_t)mid.len);
    self->plan.mid_length = (uint8_t)mid.len;
done:
    PyBuffer_Release(&kinds);
    PyBuffer_Release(&mid);
    return (PyObject *)self;
}

static PyObject *Plan_header(PlanObject *self, PyObject *data)
{
    wl_header header;
    if (!PyBytes_CheckExact(data)) {
        PyErr_SetString(PyExc_TypeError, "data must be bytes");
        return NULL;
    }
    if (!wl_rtp_plan((const uint8_t *)PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data),
                     &self->plan, &header))
        Py_RETURN_NONE;
    return Py_BuildValue("(y#nn)", (const char *)header.head, (Py_ssize_t)header.head_length,
                         (Py_ssize_t)header.payload_at, (Py_ssize_t)header.transport_at);
}

static PyObject *Plan_get_transport_id(PlanObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->plan.transport_id);
}

static PyMethodDef Plan_methods[] = {
    {"header", (PyCFunction)Plan_header, METH_O,
     "header(data) -> (head, payload_at, transport_at) or None: fastpath.plan_header."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Plan_getset[] = {
    {"transport_id", (getter)Plan_get_transport_id, NULL,
     "The destination's transport-wide sequence number id (0: none).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject PlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._native.Plan",
    .tp_basicsize = sizeof(PlanObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Plan(kinds, abs_send_time_id, audio_level_id, transport_id, payload_type, "
              "ssrc, mid_element)\n--\n\n"
              "How one source stream's headers become one destination's "
              "(fastpath.ExtensionPlan with the payload type and SSRC).",
    .tp_methods = Plan_methods,
    .tp_getset = Plan_getset,
    .tp_new = Plan_new,
};

/* ---- Forwarder ---------------------------------------------------------------- */

typedef struct {
    SessionObject *tx;
    int fd;
    const struct sockaddr *address;
    socklen_t address_length;
    wl_rewrite rewrite;
} destination;

typedef struct {
    PyObject_HEAD
    wl_send_queue queue;
    wl_recv_batch receive;
    destination destinations[MAX_DESTINATIONS];
    wl_header headers[MAX_DESTINATIONS];
    struct sockaddr_storage tuple_addresses[MAX_DESTINATIONS];
    uint8_t plain[SLOT_SIZE];
    int busy;
    unsigned long long packets, declined, refused, replayed, too_long, rewrite_failed,
        protect_failed, queued, drained, truncated;
    int last_refusal;
} ForwarderObject;

static PyTypeObject ForwarderType;

static PyObject *Forwarder_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"batch", "datagram_size", NULL};
    int batch = 64, datagram_size = SLOT_SIZE;
    ForwarderObject *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|ii:Forwarder", keywords, &batch,
                                     &datagram_size))
        return NULL;
    if (batch < 1 || batch > MAX_BATCH) {
        PyErr_Format(PyExc_ValueError, "batch must be 1-%d", MAX_BATCH);
        return NULL;
    }
    if (datagram_size < 64 || datagram_size > 65535) {
        PyErr_SetString(PyExc_ValueError, "datagram_size must be 64-65535");
        return NULL;
    }
    self = (ForwarderObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    if (!wl_send_queue_init(&self->queue, (unsigned)batch, SLOT_SIZE) ||
        !wl_recv_batch_init(&self->receive, (unsigned)batch, (size_t)datagram_size)) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void Forwarder_dealloc(ForwarderObject *self)
{
    wl_send_queue_free(&self->queue);
    wl_recv_batch_free(&self->receive);
    OPENSSL_cleanse(self->plain, sizeof self->plain);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* An exact int in [low, high]; 0 with an exception set otherwise. */
static int int_in(PyObject *value, long long low, long long high, const char *what,
                  long long *out)
{
    if (!PyLong_CheckExact(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be int", what);
        return 0;
    }
    *out = PyLong_AsLongLong(value);
    if (*out == -1 && PyErr_Occurred())
        return 0;
    if (*out < low || *out > high) {
        PyErr_Format(PyExc_ValueError, "%s out of range", what);
        return 0;
    }
    return 1;
}

/* One destination tuple into self->destinations[i]; 1, FORWARD_DECLINED, or 0
 * with an exception set. */
static int parse_destination(ForwarderObject *self, Py_ssize_t i, PyObject *item,
                             const uint8_t *data, size_t data_length)
{
    destination *d = &self->destinations[i];
    wl_rewrite *r = &d->rewrite;
    Py_ssize_t size;
    PyObject *address;
    long long fd, seq_offset, ts_offset, transport, payload_at = 0, transport_at = 0;
    PyObject *const *field;

    if (!PyTuple_CheckExact(item) ||
        ((size = PyTuple_GET_SIZE(item)) != 9 && size != 7)) {
        PyErr_SetString(PyExc_TypeError,
                        "a destination is (tx, fd, address, head, payload_at, transport_at, "
                        "seq_offset, ts_offset, transport_sequence) or (tx, fd, address, plan, "
                        "seq_offset, ts_offset, transport_sequence)");
        return 0;
    }
    field = &PyTuple_GET_ITEM(item, 0);
    if (!PyObject_TypeCheck(field[0], &SessionType)) {
        PyErr_SetString(PyExc_TypeError, "tx must be a media._native.Session");
        return 0;
    }
    d->tx = (SessionObject *)field[0];
    if (!int_in(field[1], 0, 0x7FFFFFFF, "fd", &fd))
        return 0;
    d->fd = (int)fd;
    address = field[2];
    if (PyObject_TypeCheck(address, &AddressType)) {
        d->address = (const struct sockaddr *)&((AddressObject *)address)->address;
        d->address_length = ((AddressObject *)address)->length;
    } else if (PyTuple_CheckExact(address) && PyTuple_GET_SIZE(address) >= 2) {
        long long port;
        if (!int_in(PyTuple_GET_ITEM(address, 1), 0, 65535, "port", &port) ||
            !parse_address(PyTuple_GET_ITEM(address, 0), (int)port, &self->tuple_addresses[i],
                           &d->address_length))
            return 0;
        d->address = (const struct sockaddr *)&self->tuple_addresses[i];
    } else {
        PyErr_SetString(PyExc_TypeError, "address must be an Address or (host, port)");
        return 0;
    }

    if (size == 9) {
        PyObject *head = field[3];
        const char *bytes;
        Py_ssize_t head_length;
        if (PyBytes_CheckExact(head)) {
            bytes = PyBytes_AS_STRING(head);
            head_length = PyBytes_GET_SIZE(head);
        } else if (PyByteArray_CheckExact(head)) {
            bytes = PyByteArray_AS_STRING(head);
            head_length = PyByteArray_GET_SIZE(head);
        } else {
            PyErr_SetString(PyExc_TypeError, "head must be bytes or bytearray");
            return 0;
        }
        if (head_length < 8 || head_length > WL_MAX_HEAD) {
            PyErr_Format(PyExc_ValueError, "head must be 8-%d octets", WL_MAX_HEAD);
            return 0;
        }
        /* a copy: the bytearray may change once this call is over */
        memcpy(self->headers[i].head, bytes, (size_t)head_length);
        self->headers[i].head_length = (size_t)head_length;
        if (!int_in(field[4], 0, SLOT_SIZE, "payload_at", &payload_at) ||
            !int_in(field[5], 0, WL_MAX_HEAD, "transport_at", &transport_at))
            return 0;
        self->headers[i].payload_at = (size_t)payload_at;
        self->headers[i].transport_at = (size_t)transport_at;
        field += 6;
    } else {
        if (!PyObject_TypeCheck(field[3], &PlanType)) {
            PyErr_SetString(PyExc_TypeError, "plan must be a media._native.Plan");
            return 0;
        }
        if (!wl_rtp_plan(data, data_length, &((PlanObject *)field[3])->plan, &self->headers[i]))
            return FORWARD_DECLINED;
        field += 4;
    }
    if (!int_in(field[0], LLONG_MIN, LLONG_MAX, "seq_offset", &seq_offset) ||
        !int_in(field[1], LLONG_MIN, LLONG_MAX, "ts_offset", &ts_offset) ||
        !int_in(field[2], 0, 65535, "transport_sequence", &transport))
        return 0;
    r->head = self->headers[i].head;
    r->head_length = self->headers[i].head_length;
    r->payload_at = self->headers[i].payload_at;
    r->transport_at = self->headers[i].transport_at;
    /* Python's % (floor) and two's complement agree modulo a power of two */
    r->seq_offset = (uint16_t)(unsigned long long)seq_offset;
    r->ts_offset = (uint32_t)(unsigned long long)ts_offset;
    r->transport_sequence = (uint16_t)transport;
    if (!wl_rtp_rewrite_valid(r)) {
        PyErr_SetString(PyExc_ValueError, "transport_at must leave 2 octets in the head");
        return 0;
    }
    return 1;
}

static PyObject *forward(ForwarderObject *self, PyObject *const *args, Py_ssize_t nargs, int keep)
{
    PyObject *rx, *data, *sequence, *items[MAX_DESTINATIONS], *plain = NULL, *outs = NULL;
    PyObject *result = NULL;
    Py_ssize_t count = 0, i;
    size_t length;
    int status;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "forward(rx, data, destinations)");
        return NULL;
    }
    rx = args[0];
    data = args[1];
    sequence = args[2];
    if (!PyObject_TypeCheck(rx, &SessionType)) {
        PyErr_SetString(PyExc_TypeError, "rx must be a media._native.Session");
        return NULL;
    }
    if (!PyBytes_CheckExact(data)) {
        PyErr_SetString(PyExc_TypeError, "data must be bytes");
        return NULL;
    }
    if (!PyList_CheckExact(sequence) && !PyTuple_CheckExact(sequence)) {
        PyErr_SetString(PyExc_TypeError, "destinations must be a list or a tuple");
        return NULL;
    }
    count = PySequence_Fast_GET_SIZE(sequence);
    if (count > MAX_DESTINATIONS) {
        PyErr_Format(PyExc_ValueError, "at most %d destinations", MAX_DESTINATIONS);
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Forwarder is not reentrant");
        return NULL;
    }
    self->busy = 1;
    /* Held for the call: a list's items could otherwise go while bytes are made. */
    for (i = 0; i < count; i++) {
        items[i] = PySequence_Fast_GET_ITEM(sequence, i);
        Py_INCREF(items[i]);
    }
    self->packets++;
    for (i = 0; i < count; i++) {
        int parsed = parse_destination(self, i, items[i], (const uint8_t *)PyBytes_AS_STRING(data),
                                       (size_t)PyBytes_GET_SIZE(data));
        if (parsed == FORWARD_DECLINED) {
            self->declined++;
            result = PyLong_FromLong(FORWARD_DECLINED);
            goto done;
        }
        if (!parsed)
            goto done;
    }

    length = (size_t)PyBytes_GET_SIZE(data);
    if (length > sizeof self->plain) {
        self->too_long++;
        result = PyLong_FromLong(FORWARD_REFUSED);
        goto done;
    }
    memcpy(self->plain, PyBytes_AS_STRING(data), length);
    WL_LOCK();
    status = wl_srtp_unprotect(((SessionObject *)rx)->srtp, self->plain, &length);
    WL_UNLOCK();
    if (status != WL_OK) {
        self->refused++;
        if (status == WL_REPLAY_FAIL || status == WL_REPLAY_OLD)
            self->replayed++;
        self->last_refusal = status;
        result = PyLong_FromLong(FORWARD_REFUSED);
        goto done;
    }
    if (keep) {
        plain = PyBytes_FromStringAndSize((const char *)self->plain, (Py_ssize_t)length);
        outs = PyList_New(count);
        if (plain == NULL || outs == NULL)
            goto done;
    }
    for (i = 0; i < count; i++) {
        destination *d = &self->destinations[i];
        uint8_t *slot = wl_send_queue_next(&self->queue);
        size_t out_length;
        if (slot == NULL) {
            wl_send_queue_flush(&self->queue);
            slot = wl_send_queue_next(&self->queue);
        }
        if (slot == NULL) { /* cannot happen: a flush empties the queue */
            self->rewrite_failed++;
            if (keep) {
                Py_INCREF(Py_None);
                PyList_SET_ITEM(outs, i, Py_None);
            }
            continue;
        }
        if (!wl_rtp_rewrite(self->plain, length, &d->rewrite, slot,
                            SLOT_SIZE - WL_SRTP_MAX_TRAILER, &out_length)) {
            self->rewrite_failed++;
            if (keep) {
                Py_INCREF(Py_None);
                PyList_SET_ITEM(outs, i, Py_None);
            }
            continue;
        }
        if (keep) {
            PyObject *out = PyBytes_FromStringAndSize((const char *)slot, (Py_ssize_t)out_length);
            if (out == NULL)
                goto done;
            PyList_SET_ITEM(outs, i, out);
        }
        WL_LOCK();
        status = wl_srtp_protect(d->tx->srtp, slot, &out_length, SLOT_SIZE);
        WL_UNLOCK();
        if (status != WL_OK) {
            self->protect_failed++;
            continue;
        }
        wl_send_queue_commit(&self->queue, out_length, d->fd, d->address, d->address_length);
        self->queued++;
    }
    if (keep)
        result = PyTuple_Pack(2, plain, outs);
    else
        result = PyLong_FromSize_t(length);
done:
    Py_XDECREF(plain);
    Py_XDECREF(outs);
    for (i = 0; i < count; i++)
        Py_DECREF(items[i]);
    self->busy = 0;
    return result;
}

static PyObject *Forwarder_forward(ForwarderObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return forward(self, args, nargs, 0);
}

static PyObject *Forwarder_forward_keep(ForwarderObject *self, PyObject *const *args,
                                        Py_ssize_t nargs)
{
    return forward(self, args, nargs, 1);
}

static PyObject *Forwarder_flush(ForwarderObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Forwarder is not reentrant");
        return NULL;
    }
    return PyLong_FromUnsignedLong(wl_send_queue_flush(&self->queue));
}

/* Python's own tuple for a socket address (socket.recvfrom's). */
PyObject *wl_address_tuple(const struct sockaddr_storage *address, socklen_t length)
{
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    if (address->ss_family == AF_INET && length >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)address;
        if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof host) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, ntohs(in->sin_port));
    }
    if (address->ss_family == AF_INET6 && length >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
        if (getnameinfo((const struct sockaddr *)address, length, host, sizeof host, NULL, 0,
                        NI_NUMERICHOST) != 0) {
            PyErr_SetString(PyExc_OSError, "getnameinfo failed");
            return NULL;
        }
        return Py_BuildValue("(siII)", host, ntohs(in6->sin6_port),
                             (unsigned int)ntohl(in6->sin6_flowinfo),
                             (unsigned int)in6->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

static PyObject *Forwarder_drain(ForwarderObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long fd, max;
    PyObject *list, *last = NULL;
    const struct sockaddr_storage *last_address = NULL;
    socklen_t last_length = 0;
    int received;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "drain(fd, max_datagrams)");
        return NULL;
    }
    if (!int_in(args[0], 0, 0x7FFFFFFF, "fd", &fd) ||
        !int_in(args[1], 0, MAX_BATCH, "max_datagrams", &max))
        return NULL;
    received = wl_recv_batch_receive(&self->receive, (int)fd, (unsigned)max);
    if (received < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return PyList_New(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (int i = 0; i < received; i++) {
        const struct msghdr *h = &self->receive.messages[i].msg_hdr;
        const struct sockaddr_storage *address = &self->receive.addresses[i];
        PyObject *datagram, *pair;
        int appended;
        if (h->msg_flags & MSG_TRUNC) {
            self->truncated++;
            continue;
        }
        /* datagrams of one burst mostly come from one peer: one tuple for them */
        if (last == NULL || h->msg_namelen != last_length ||
            memcmp(address, last_address, h->msg_namelen) != 0) {
            Py_XDECREF(last);
            last = wl_address_tuple(address, h->msg_namelen);
            if (last == NULL)
                goto failed;
            last_address = address;
            last_length = h->msg_namelen;
        }
        datagram = PyBytes_FromStringAndSize(
            (const char *)self->receive.slots + (size_t)i * self->receive.slot_size,
            (Py_ssize_t)self->receive.messages[i].msg_len);
        if (datagram == NULL)
            goto failed;
        pair = PyTuple_Pack(2, datagram, last);
        Py_DECREF(datagram);
        if (pair == NULL)
            goto failed;
        appended = PyList_Append(list, pair);
        Py_DECREF(pair);
        if (appended < 0)
            goto failed;
        self->drained++;
    }
    Py_XDECREF(last);
    return list;
failed:
    Py_XDECREF(last);
    Py_DECREF(list);
    return NULL;
}

static PyObject *Forwarder_stats(ForwarderObject *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsKsKsKsKsisi}", "packets", self->packets, "declined", self->declined,
        "refused", self->refused, "replayed", self->replayed, "too_long", self->too_long,
        "rewrite_failed", self->rewrite_failed, "protect_failed", self->protect_failed,
        "queued", self->queued, "sent", (unsigned long long)self->queue.sent, "dropped",
        (unsigned long long)self->queue.dropped, "failed", (unsigned long long)self->queue.failed,
        "drained", self->drained, "truncated", self->truncated, "last_errno",
        self->queue.last_errno, "last_refusal", self->last_refusal);
}

static PyObject *Forwarder_get_pending(ForwarderObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLong(self->queue.count);
}

static PyMethodDef Forwarder_methods[] = {
    {"forward", (PyCFunction)(void (*)(void))Forwarder_forward, METH_FASTCALL,
     "forward(rx, data, destinations) -> plain length, DECLINED or REFUSED"},
    {"forward_keep", (PyCFunction)(void (*)(void))Forwarder_forward_keep, METH_FASTCALL,
     "forward_keep(rx, data, destinations) -> (plain, [rewritten or None]), DECLINED or "
     "REFUSED"},
    {"flush", (PyCFunction)Forwarder_flush, METH_NOARGS,
     "Send the queued datagrams (sendmmsg per socket); how many were sent."},
    {"drain", (PyCFunction)(void (*)(void))Forwarder_drain, METH_FASTCALL,
     "drain(fd, max_datagrams) -> [(datagram, address)] (recvmmsg, without blocking)"},
    {"stats", (PyCFunction)Forwarder_stats, METH_NOARGS, "What the forwarder did and dropped."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Forwarder_getset[] = {
    {"pending", (getter)Forwarder_get_pending, NULL, "Datagrams queued, not yet flushed.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ForwarderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._native.Forwarder",
    .tp_basicsize = sizeof(ForwarderObject),
    .tp_dealloc = (destructor)Forwarder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Forwarder(batch=64, datagram_size=2048)\n--\n\n"
              "Steady packets forwarded in C: one unprotect, each destination's rewrite\n"
              "and protect, sendmmsg batches; and recvmmsg batches from a socket.",
    .tp_methods = Forwarder_methods,
    .tp_getset = Forwarder_getset,
    .tp_new = Forwarder_new,
};

/* ---- module ------------------------------------------------------------------- */

static PyObject *openssl_version(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyUnicode_FromString(OpenSSL_version(OPENSSL_VERSION));
}

static PyMethodDef module_methods[] = {
    {"openssl_version", openssl_version, METH_NOARGS, "The libcrypto this module runs on."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "media._native",
    .m_doc = "The relay's per-packet work in C: SRTP, header rewrite, batched datagrams.",
    .m_size = -1,
    .m_methods = module_methods,
};

/* pylibsrtp.Error when pylibsrtp is there, so that aiortc's handlers catch ours. */
static PyObject *error_base(void)
{
    PyObject *pylibsrtp = PyImport_ImportModule("pylibsrtp"), *base = NULL;
    if (pylibsrtp != NULL) {
        base = PyObject_GetAttrString(pylibsrtp, "Error");
        Py_DECREF(pylibsrtp);
    }
    if (base == NULL || !PyType_Check(base) ||
        !PyType_IsSubtype((PyTypeObject *)base, (PyTypeObject *)PyExc_Exception)) {
        PyErr_Clear();
        Py_XDECREF(base);
        Py_INCREF(PyExc_Exception);
        base = PyExc_Exception;
    }
    return base;
}

PyMODINIT_FUNC PyInit__native(void)
{
    PyObject *m, *base;
    if (PyType_Ready(&SessionType) < 0 || PyType_Ready(&AddressType) < 0 ||
        PyType_Ready(&PlanType) < 0 || PyType_Ready(&ForwarderType) < 0)
        return NULL;
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    base = error_base();
    NativeError = PyErr_NewExceptionWithDoc(
        "media._native.Error", "An SRTP operation refused a packet (libsrtp's message).", base,
        NULL);
    Py_DECREF(base);
    if (NativeError == NULL || PyModule_AddObjectRef(m, "Error", NativeError) < 0 ||
        PyModule_AddObjectRef(m, "Session", (PyObject *)&SessionType) < 0 ||
        PyModule_AddObjectRef(m, "Address", (PyObject *)&AddressType) < 0 ||
        PyModule_AddObjectRef(m, "Plan", (PyObject *)&PlanType) < 0 ||
        PyModule_AddObjectRef(m, "Forwarder", (PyObject *)&ForwarderType) < 0 ||
        !wl_pump_add_types(m) ||
        PyModule_AddIntConstant(m, "DECLINED", FORWARD_DECLINED) < 0 ||
        PyModule_AddIntConstant(m, "REFUSED", FORWARD_REFUSED) < 0 ||
        PyModule_AddIntConstant(m, "MAX_DESTINATIONS", MAX_DESTINATIONS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_BATCH", MAX_BATCH) < 0 ||
        PyModule_AddIntConstant(m, "SLOT_SIZE", SLOT_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "EXT_DROP", WL_EXT_DROP) < 0 ||
        PyModule_AddIntConstant(m, "EXT_ABS_SEND_TIME", WL_EXT_ABS_SEND_TIME) < 0 ||
        PyModule_AddIntConstant(m, "EXT_AUDIO_LEVEL", WL_EXT_AUDIO_LEVEL) < 0 ||
        PyModule_AddIntConstant(m, "EXT_SLOW", WL_EXT_SLOW) < 0) {
        Py_XDECREF(NativeError);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
