/* The Python objects module.c defines that pump.c uses too, and the one lock
 * that guards every piece of state the pump's thread shares with Python.
 *
 * The pump (pump.c) forwards steady packets on a thread of its own, without
 * the GIL. Everything that thread touches (SRTP sessions, the pump's streams,
 * legs and routes) is read and written under wl_state_lock, by the thread and
 * by Python's methods alike; the thread never touches a Python object. Held
 * for microseconds (a batch's work), never while waiting for the GIL. */
#ifndef WL_OBJECTS_H
#define WL_OBJECTS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <sys/socket.h>

#include "wl_rtp.h"
#include "wl_srtp.h"

typedef struct {
    PyObject_HEAD
    wl_srtp *srtp;
    int profile;
} SessionObject;

typedef struct {
    PyObject_HEAD
    wl_plan plan;
} PlanObject;

typedef struct {
    PyObject_HEAD
    struct sockaddr_storage address;
    socklen_t length;
    PyObject *host;
    int port;
} AddressObject;

extern PyTypeObject SessionType;
extern PyTypeObject AddressType;
extern PyTypeObject PlanType;
extern pthread_mutex_t wl_state_lock;

#define WL_LOCK() pthread_mutex_lock(&wl_state_lock)
#define WL_UNLOCK() pthread_mutex_unlock(&wl_state_lock)

/* Python's own tuple for a socket address (socket.recvfrom's); None for another family. */
PyObject *wl_address_tuple(const struct sockaddr_storage *address, socklen_t length);

/* The pump's types, added to the module; 0 with an exception set on failure. */
int wl_pump_add_types(PyObject *module);

#endif
