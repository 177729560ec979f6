/* Datagrams in batches: a send queue flushed with sendmmsg, one call per
 * socket, and a receive batch filled with recvmmsg into reused buffers.
 * No Python here (module.c wraps it). */
#ifndef WL_BATCH_H
#define WL_BATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct {
    unsigned capacity; /* datagrams queued at most */
    unsigned count;
    size_t slot_size;  /* bytes per datagram */
    uint8_t *slots;
    size_t *lengths;
    int *fds;
    struct sockaddr_storage *addresses;
    socklen_t *address_lengths;
    struct mmsghdr *messages;
    struct iovec *iovecs;
    uint8_t *done;
    /* what happened to the datagrams flushed */
    uint64_t sent;
    uint64_t dropped; /* the socket's buffer was full (EAGAIN, ENOBUFS) */
    uint64_t failed;  /* any other error, datagram by datagram */
    int last_errno;
} wl_send_queue;

int wl_send_queue_init(wl_send_queue *q, unsigned capacity, size_t slot_size);
void wl_send_queue_free(wl_send_queue *q);
/* The buffer of the next datagram (slot_size bytes), NULL when the queue is full. */
uint8_t *wl_send_queue_next(wl_send_queue *q);
/* Queue the datagram written in the buffer wl_send_queue_next gave. */
void wl_send_queue_commit(wl_send_queue *q, size_t length, int fd,
                          const struct sockaddr *address, socklen_t address_length);
/* Send everything queued, grouped per socket in queue order; the datagrams sent. */
unsigned wl_send_queue_flush(wl_send_queue *q);

typedef struct {
    unsigned capacity;
    size_t slot_size;
    uint8_t *slots;
    struct sockaddr_storage *addresses;
    struct mmsghdr *messages;
    struct iovec *iovecs;
} wl_recv_batch;

int wl_recv_batch_init(wl_recv_batch *b, unsigned capacity, size_t slot_size);
void wl_recv_batch_free(wl_recv_batch *b);
/* Up to ``max`` datagrams waiting on ``fd`` without blocking: how many (their
 * bytes in slots[i * slot_size], lengths in messages[i].msg_len), or -1 with
 * errno (EAGAIN when none is waiting). */
int wl_recv_batch_receive(wl_recv_batch *b, int fd, unsigned max);

#endif
