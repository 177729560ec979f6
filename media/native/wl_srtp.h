/* SRTP and SRTCP (RFC 3711, RFC 7714) through OpenSSL's libcrypto, giving the
 * bytes and the refusals of libsrtp 2.7 (the one inside pylibsrtp 1.0, which
 * aiortc 1.16 uses) for the profiles aiortc negotiates.
 *
 * No Python here: the extension module (module.c) and the fuzz targets
 * (fuzz/) both build on it. Packets are processed in place, as libsrtp does;
 * the caller's buffer must have room for the trailer protect adds.
 */
#ifndef WL_SRTP_H
#define WL_SRTP_H

#include <stddef.h>
#include <stdint.h>

/* libsrtp's srtp_err_status_t values for the failures that can happen here
 * (pylibsrtp turns them into the same message, by number). */
enum {
    WL_OK = 0,
    WL_BAD_PARAM = 2,
    WL_ALLOC_FAIL = 3,
    WL_AUTH_FAIL = 7,
    WL_CIPHER_FAIL = 8,
    WL_REPLAY_FAIL = 9,
    WL_REPLAY_OLD = 10,
    WL_CANT_CHECK = 14,
    WL_KEY_EXPIRED = 15,
    WL_PARSE_ERR = 21,
};

/* libsrtp's srtp_profile_t values (pylibsrtp.Policy.SRTP_PROFILE_*). */
enum {
    WL_AES128_CM_SHA1_80 = 1,
    WL_AES128_CM_SHA1_32 = 2,
    WL_AEAD_AES_128_GCM = 7,
    WL_AEAD_AES_256_GCM = 8,
};

/* The most protect adds: to an RTP packet (a GCM tag), to an RTCP packet (a
 * GCM tag and the SRTCP index). */
#define WL_SRTP_MAX_TRAILER 16
#define WL_SRTCP_MAX_TRAILER 20

/* Streams (SSRCs) one session keeps, at most: libsrtp keeps any number; past
 * this a new SSRC is refused with WL_ALLOC_FAIL. */
#define WL_MAX_STREAMS 65536

typedef struct wl_srtp wl_srtp;

/* A session for ``profile`` keyed with the master key and salt ``key`` (the
 * first wl_srtp_key_length(profile) bytes), with libsrtp's policy options.
 * NULL on failure, the reason in *status (WL_BAD_PARAM, WL_ALLOC_FAIL). */
wl_srtp *wl_srtp_new(int profile, const uint8_t *key, size_t key_length,
                     unsigned long window_size, int allow_repeat_tx, int *status);
void wl_srtp_free(wl_srtp *session);

/* Master key + salt length of a profile; 0 if it is not supported. */
size_t wl_srtp_key_length(int profile);
/* What protect adds to an RTP packet (the authentication tag). */
size_t wl_srtp_rtp_overhead(const wl_srtp *session);
/* What protect_rtcp adds to an RTCP packet (index and tag). */
size_t wl_srtp_rtcp_overhead(const wl_srtp *session);
/* Streams the session has created. */
size_t wl_srtp_stream_count(const wl_srtp *session);

/* Each takes the packet in buffer[0:*length], a buffer of ``capacity`` bytes,
 * and leaves the result there with its length in *length; WL_OK or a libsrtp
 * status. Nothing outside buffer[0:capacity] is read or written. */
int wl_srtp_protect(wl_srtp *session, uint8_t *buffer, size_t *length, size_t capacity);
int wl_srtp_unprotect(wl_srtp *session, uint8_t *buffer, size_t *length);
int wl_srtp_protect_rtcp(wl_srtp *session, uint8_t *buffer, size_t *length,
                         size_t capacity);
int wl_srtp_unprotect_rtcp(wl_srtp *session, uint8_t *buffer, size_t *length);

/* libsrtp's text for a status (pylibsrtp's ERRORS). */
const char *wl_srtp_status_text(int status);

#endif
