/* sendmmsg / recvmmsg batches (wl_batch.h). */
#define _GNU_SOURCE 1
#include "wl_batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int wl_send_queue_init(wl_send_queue *q, unsigned capacity, size_t slot_size)
{
    memset(q, 0, sizeof *q);
    q->capacity = capacity;
    q->slot_size = slot_size;
    q->slots = malloc((size_t)capacity * slot_size);
    q->lengths = calloc(capacity, sizeof *q->lengths);
    q->fds = calloc(capacity, sizeof *q->fds);
    q->addresses = calloc(capacity, sizeof *q->addresses);
    q->address_lengths = calloc(capacity, sizeof *q->address_lengths);
    q->messages = calloc(capacity, sizeof *q->messages);
    q->iovecs = calloc(capacity, sizeof *q->iovecs);
    q->done = calloc(capacity, 1);
    if (!q->slots || !q->lengths || !q->fds || !q->addresses || !q->address_lengths ||
        !q->messages || !q->iovecs || !q->done) {
        wl_send_queue_free(q);
        return 0;
    }
    return 1;
}

void wl_send_queue_free(wl_send_queue *q)
{
    free(q->slots);
    free(q->lengths);
    free(q->fds);
    free(q->addresses);
    free(q->address_lengths);
    free(q->messages);
    free(q->iovecs);
    free(q->done);
    memset(q, 0, sizeof *q);
}

uint8_t *wl_send_queue_next(wl_send_queue *q)
{
    if (q->slots == NULL || q->count >= q->capacity)
        return NULL;
    return q->slots + (size_t)q->count * q->slot_size;
}

void wl_send_queue_commit(wl_send_queue *q, size_t length, int fd,
                          const struct sockaddr *address, socklen_t address_length)
{
    unsigned i = q->count;
    if (i >= q->capacity || length > q->slot_size ||
        address_length > (socklen_t)sizeof q->addresses[i])
        return;
    q->lengths[i] = length;
    q->fds[i] = fd;
    memcpy(&q->addresses[i], address, address_length);
    q->address_lengths[i] = address_length;
    q->count++;
}

unsigned wl_send_queue_flush(wl_send_queue *q)
{
    unsigned total = 0;
    memset(q->done, 0, q->count);
    for (unsigned first = 0; first < q->count; first++) {
        unsigned n = 0, at = 0;
        int fd = q->fds[first];
        if (q->done[first])
            continue;
        for (unsigned i = first; i < q->count; i++) {
            struct msghdr *h;
            if (q->done[i] || q->fds[i] != fd)
                continue;
            q->done[i] = 1;
            q->iovecs[n].iov_base = q->slots + (size_t)i * q->slot_size;
            q->iovecs[n].iov_len = q->lengths[i];
            h = &q->messages[n].msg_hdr;
            memset(h, 0, sizeof *h);
            h->msg_name = &q->addresses[i];
            h->msg_namelen = q->address_lengths[i];
            h->msg_iov = &q->iovecs[n];
            h->msg_iovlen = 1;
            n++;
        }
        while (at < n) {
            int sent = sendmmsg(fd, q->messages + at, n - at, MSG_DONTWAIT);
            if (sent > 0) {
                at += (unsigned)sent;
                total += (unsigned)sent;
                continue;
            }
            if (sent < 0 && errno == EINTR)
                continue;
            if (sent == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                /* the socket's buffer is full: the rest of this socket's batch is lost */
                q->last_errno = sent == 0 ? EAGAIN : errno;
                q->dropped += n - at;
                break;
            }
            /* this datagram cannot go (unreachable, refused...): the next may */
            q->last_errno = errno;
            q->failed++;
            at++;
        }
    }
    q->sent += total;
    q->count = 0;
    return total;
}

int wl_recv_batch_init(wl_recv_batch *b, unsigned capacity, size_t slot_size)
{
    memset(b, 0, sizeof *b);
    b->capacity = capacity;
    b->slot_size = slot_size;
    b->slots = malloc((size_t)capacity * slot_size);
    b->addresses = calloc(capacity, sizeof *b->addresses);
    b->messages = calloc(capacity, sizeof *b->messages);
    b->iovecs = calloc(capacity, sizeof *b->iovecs);
    if (!b->slots || !b->addresses || !b->messages || !b->iovecs) {
        wl_recv_batch_free(b);
        return 0;
    }
    return 1;
}

void wl_recv_batch_free(wl_recv_batch *b)
{
    free(b->slots);
    free(b->addresses);
    free(b->messages);
    free(b->iovecs);
    memset(b, 0, sizeof *b);
}

int wl_recv_batch_receive(wl_recv_batch *b, int fd, unsigned max)
{
    int received;
    if (max > b->capacity)
        max = b->capacity;
    if (max == 0)
        return 0;
    for (unsigned i = 0; i < max; i++) {
        struct msghdr *h = &b->messages[i].msg_hdr;
        b->iovecs[i].iov_base = b->slots + (size_t)i * b->slot_size;
        b->iovecs[i].iov_len = b->slot_size;
        memset(h, 0, sizeof *h);
        h->msg_name = &b->addresses[i];
        h->msg_namelen = sizeof b->addresses[i];
        h->msg_iov = &b->iovecs[i];
        h->msg_iovlen = 1;
        b->messages[i].msg_len = 0;
    }
    do {
        received = recvmmsg(fd, b->messages, max, MSG_DONTWAIT, NULL);
    } while (received < 0 && errno == EINTR);
    return received;
}
