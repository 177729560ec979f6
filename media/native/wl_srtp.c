/* SRTP/SRTCP as libsrtp 2.7 does it, through OpenSSL's EVP (wl_srtp.h).
 *
 * Every step below follows libsrtp 2.7.0's srtp/srtp.c and crypto/replay/
 * rdbx.c, rdb.c in the same order, so that the same packet gets the same
 * bytes or the same refusal: a replayed packet is refused before its
 * authentication is checked, a short one with the same status, and a new
 * SSRC becomes a stream only once a packet of it has authenticated
 * (unprotect) or at its first packet (protect). The tests hold both
 * implementations to each other (tests/media/test_native_srtp.py).
 */
#include "wl_srtp.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/params.h>

#if OPENSSL_VERSION_MAJOR < 3
#error "the native data path needs OpenSSL 3 (EVP_MAC)"
#endif

#define SEQ_MEDIAN 32768
#define SEQ_MAX 65536
#define RTCP_WINDOW 128
#define SRTCP_E_BIT 0x80000000u
#define SRTCP_INDEX_MASK 0x7fffffffu
/* Longer packets are refused (libsrtp counts lengths in an int; pylibsrtp
 * never passes more than 1500 bytes). */
#define MAX_PACKET (1u << 16)

typedef struct {
    int profile;
    size_t key;      /* master key */
    size_t salt;     /* master salt */
    int aead;
    size_t rtp_tag;  /* authentication tag of SRTP */
    size_t rtcp_tag; /* of SRTCP (SHA1_32 keeps 80 bits there, as libsrtp) */
} profile_info;

static const profile_info PROFILES[] = {
    {WL_AES128_CM_SHA1_80, 16, 14, 0, 10, 10},
    {WL_AES128_CM_SHA1_32, 16, 14, 0, 4, 10},
    {WL_AEAD_AES_128_GCM, 16, 12, 1, 16, 16},
    {WL_AEAD_AES_256_GCM, 32, 12, 1, 16, 16},
};

typedef struct {
    uint32_t ssrc;
    uint32_t used;
    uint64_t index;          /* libsrtp's rdbx index: ROC << 16 | sequence number */
    uint32_t rtcp_start;     /* libsrtp's rdb window_start */
    uint32_t unused;
    uint64_t rtcp_mask[2];   /* bit k: SRTCP index rtcp_start + k seen */
} wl_stream;

struct wl_srtp {
    const profile_info *info;
    int allow_repeat_tx;
    unsigned window_bits;  /* the RTP replay window, a multiple of 32 as libsrtp's */
    unsigned window_words; /* 64-bit words of a stream's window: bit k is index - k */
    EVP_CIPHER_CTX *rtp_enc, *rtp_dec, *rtcp_enc, *rtcp_dec;
    EVP_MAC_CTX *rtp_mac, *rtcp_mac;
    /* AES-CM: the session salt and two zero octets (libsrtp's offset); GCM: 12 octets */
    uint8_t rtp_salt[16];
    uint8_t rtcp_salt[16];
    wl_stream *streams; /* open addressing on the SSRC; capacity a power of two */
    uint64_t *windows;  /* window_words per slot of streams */
    size_t capacity;
    size_t count;
};

static const char *const STATUS_TEXT[] = {
    "nothing to report",
    "unspecified failure",
    "unsupported parameter",
    "couldn't allocate memory",
    "couldn't deallocate properly",
    "couldn't initialize",
    "can't process as much data as requested",
    "authentication failure",
    "cipher failure",
    "replay check failed (bad index)",
    "replay check failed (index too old)",
    "algorithm failed test routine",
    "unsupported operation",
    "no appropriate context found",
    "unable to perform desired validation",
    "can't use key any more",
    "error in use of socket",
    "error in use POSIX signals",
    "nonce check failed",
    "couldn't read data",
    "couldn't write data",
    "error parsing data",
    "error encoding data",
    "error while using semaphores",
    "error while using pfkey",
    "error MKI present in packet is invalid",
    "packet index is too old to consider",
    "packet index advanced, reset needed",
};

const char *wl_srtp_status_text(int status)
{
    if (status < 0 || (size_t)status >= sizeof STATUS_TEXT / sizeof STATUS_TEXT[0])
        return "unspecified failure";
    return STATUS_TEXT[status];
}

static const profile_info *profile_of(int profile)
{
    for (size_t i = 0; i < sizeof PROFILES / sizeof PROFILES[0]; i++)
        if (PROFILES[i].profile == profile)
            return &PROFILES[i];
    return NULL;
}

size_t wl_srtp_key_length(int profile)
{
    const profile_info *info = profile_of(profile);
    return info ? info->key + info->salt : 0;
}

size_t wl_srtp_rtp_overhead(const wl_srtp *s) { return s->info->rtp_tag; }

size_t wl_srtp_rtcp_overhead(const wl_srtp *s) { return s->info->rtcp_tag + 4; }

size_t wl_srtp_stream_count(const wl_srtp *s) { return s->count; }

static uint16_t read16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static uint32_t read32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void write32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- keys ------------------------------------------------------------------ */

/* RFC 3711 4.3 with AES-CM as its PRF, as libsrtp runs it: the master salt
 * (a GCM one padded with zeros to 14 octets) with the label at octet 7. */
static int derive(const uint8_t *master_key, size_t key_length, const uint8_t salt[14],
                  uint8_t label, uint8_t *out, size_t length)
{
    uint8_t iv[16] = {0};
    int written = 0, ok;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return 0;
    memcpy(iv, salt, 14);
    iv[7] ^= label;
    memset(out, 0, length);
    ok = EVP_EncryptInit_ex(ctx, key_length == 32 ? EVP_aes_256_ctr() : EVP_aes_128_ctr(),
                            NULL, master_key, iv) &&
         EVP_EncryptUpdate(ctx, out, &written, out, (int)length);
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

static EVP_CIPHER_CTX *cipher_context(const EVP_CIPHER *cipher, const uint8_t *key, int encrypt)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx != NULL && !EVP_CipherInit_ex(ctx, cipher, NULL, key, NULL, encrypt)) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static EVP_MAC_CTX *hmac_sha1_context(const uint8_t key[20])
{
    char digest[] = "SHA1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx;
    if (mac == NULL)
        return NULL;
    ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac); /* the context holds its own reference */
    if (ctx != NULL && !EVP_MAC_init(ctx, key, 20, params)) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void wl_srtp_free(wl_srtp *s)
{
    if (s == NULL)
        return;
    EVP_CIPHER_CTX_free(s->rtp_enc);
    EVP_CIPHER_CTX_free(s->rtp_dec);
    EVP_CIPHER_CTX_free(s->rtcp_enc);
    EVP_CIPHER_CTX_free(s->rtcp_dec);
    EVP_MAC_CTX_free(s->rtp_mac);
    EVP_MAC_CTX_free(s->rtcp_mac);
    free(s->streams);
    free(s->windows);
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

wl_srtp *wl_srtp_new(int profile, const uint8_t *key, size_t key_length,
                     unsigned long window_size, int allow_repeat_tx, int *status)
{
    const profile_info *info = profile_of(profile);
    uint8_t salt[14] = {0};
    uint8_t rtp_key[32], rtp_salt[14], rtp_auth[20];
    uint8_t rtcp_key[32], rtcp_salt[14], rtcp_auth[20];
    wl_srtp *s;
    int ok;

    *status = WL_BAD_PARAM;
    if (info == NULL || key_length < info->key + info->salt)
        return NULL;
    /* libsrtp's srtp_stream_init and bitvector_alloc */
    if (window_size != 0 && (window_size < 64 || window_size >= 0x8000))
        return NULL;
    if (window_size == 0)
        window_size = 128;
    if (allow_repeat_tx != 0 && allow_repeat_tx != 1)
        return NULL;

    *status = WL_ALLOC_FAIL;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->info = info;
    s->allow_repeat_tx = allow_repeat_tx;
    s->window_bits = (unsigned)((window_size + 31) & ~31ul);
    s->window_words = (s->window_bits + 63) / 64;

    memcpy(salt, key + info->key, info->salt);
    ok = derive(key, info->key, salt, 0x00, rtp_key, info->key) &&
         derive(key, info->key, salt, 0x02, rtp_salt, info->salt) &&
         derive(key, info->key, salt, 0x01, rtp_auth, sizeof rtp_auth) &&
         derive(key, info->key, salt, 0x03, rtcp_key, info->key) &&
         derive(key, info->key, salt, 0x05, rtcp_salt, info->salt) &&
         derive(key, info->key, salt, 0x04, rtcp_auth, sizeof rtcp_auth);
    if (ok && info->aead) {
        const EVP_CIPHER *gcm = info->key == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm();
        s->rtp_enc = cipher_context(gcm, rtp_key, 1);
        s->rtp_dec = cipher_context(gcm, rtp_key, 0);
        s->rtcp_enc = cipher_context(gcm, rtcp_key, 1);
        s->rtcp_dec = cipher_context(gcm, rtcp_key, 0);
        ok = s->rtp_enc && s->rtp_dec && s->rtcp_enc && s->rtcp_dec;
    } else if (ok) {
        /* Counter mode is its own inverse: one context each way. */
        s->rtp_enc = cipher_context(EVP_aes_128_ctr(), rtp_key, 1);
        s->rtcp_enc = cipher_context(EVP_aes_128_ctr(), rtcp_key, 1);
        s->rtp_mac = hmac_sha1_context(rtp_auth);
        s->rtcp_mac = hmac_sha1_context(rtcp_auth);
        ok = s->rtp_enc && s->rtcp_enc && s->rtp_mac && s->rtcp_mac;
    }
    memcpy(s->rtp_salt, rtp_salt, info->salt);
    memcpy(s->rtcp_salt, rtcp_salt, info->salt);
    OPENSSL_cleanse(rtp_key, sizeof rtp_key);
    OPENSSL_cleanse(rtp_salt, sizeof rtp_salt);
    OPENSSL_cleanse(rtp_auth, sizeof rtp_auth);
    OPENSSL_cleanse(rtcp_key, sizeof rtcp_key);
    OPENSSL_cleanse(rtcp_salt, sizeof rtcp_salt);
    OPENSSL_cleanse(rtcp_auth, sizeof rtcp_auth);
    OPENSSL_cleanse(salt, sizeof salt);
    if (!ok) {
        wl_srtp_free(s);
        *status = 5; /* srtp_err_status_init_fail */
        return NULL;
    }
    *status = WL_OK;
    return s;
}

/* ---- streams ----------------------------------------------------------------- */

static size_t hash_of(uint32_t ssrc)
{
    uint32_t h = ssrc * 0x9E3779B1u;
    return (size_t)(h ^ (h >> 15));
}

static wl_stream *stream_find(wl_srtp *s, uint32_t ssrc)
{
    size_t mask, i;
    if (s->capacity == 0)
        return NULL;
    mask = s->capacity - 1;
    for (i = hash_of(ssrc) & mask; s->streams[i].used; i = (i + 1) & mask)
        if (s->streams[i].ssrc == ssrc)
            return &s->streams[i];
    return NULL;
}

static uint64_t *window_of(wl_srtp *s, const wl_stream *stream)
{
    return s->windows + (size_t)(stream - s->streams) * s->window_words;
}

static int table_grow(wl_srtp *s)
{
    size_t capacity = s->capacity ? s->capacity * 2 : 8, words = s->window_words;
    wl_stream *streams = calloc(capacity, sizeof *streams);
    uint64_t *windows = calloc(capacity * words, sizeof *windows);
    if (streams == NULL || windows == NULL) {
        free(streams);
        free(windows);
        return 0;
    }
    for (size_t old = 0; old < s->capacity; old++) {
        size_t i;
        if (!s->streams[old].used)
            continue;
        for (i = hash_of(s->streams[old].ssrc) & (capacity - 1); streams[i].used;
             i = (i + 1) & (capacity - 1)) {
        }
        streams[i] = s->streams[old];
        memcpy(windows + i * words, s->windows + old * words, words * sizeof *windows);
    }
    free(s->streams);
    free(s->windows);
    s->streams = streams;
    s->windows = windows;
    s->capacity = capacity;
    return 1;
}

/* A new stream for ``ssrc`` (not in the table), in libsrtp's initial state. */
static wl_stream *stream_add(wl_srtp *s, uint32_t ssrc)
{
    size_t i;
    if (s->count >= WL_MAX_STREAMS)
        return NULL;
    if ((s->count + 1) * 2 > s->capacity && !table_grow(s))
        return NULL;
    for (i = hash_of(ssrc) & (s->capacity - 1); s->streams[i].used;
         i = (i + 1) & (s->capacity - 1)) {
    }
    s->streams[i].used = 1;
    s->streams[i].ssrc = ssrc;
    s->count++;
    return &s->streams[i];
}

/* ---- replay: libsrtp's rdbx (SRTP) and rdb (SRTCP) ---------------------------- */

/* srtp_rdbx_estimate_index and srtp_index_guess: the packet index ``s`` most
 * likely has, and how far it is ahead of the highest seen (negative: behind). */
static int32_t estimate_index(uint64_t index, uint16_t s, uint64_t *guess)
{
    if (index > SEQ_MEDIAN) {
        uint32_t local_roc = (uint32_t)(index >> 16), guess_roc;
        int32_t local_seq = (uint16_t)index, seq = s, difference;
        if (local_seq < SEQ_MEDIAN) {
            if (seq - local_seq > SEQ_MEDIAN) {
                guess_roc = local_roc - 1;
                difference = seq - local_seq - SEQ_MAX;
            } else {
                guess_roc = local_roc;
                difference = seq - local_seq;
            }
        } else {
            if (local_seq - SEQ_MEDIAN > seq) {
                guess_roc = local_roc + 1;
                difference = seq - local_seq + SEQ_MAX;
            } else {
                guess_roc = local_roc;
                difference = seq - local_seq;
            }
        }
        *guess = ((uint64_t)guess_roc << 16) | s;
        return difference;
    }
    *guess = s;
    return (int32_t)s - (int32_t)(uint16_t)index;
}

static int window_bit(const uint64_t *w, unsigned k) { return (int)((w[k >> 6] >> (k & 63)) & 1); }

static void window_set(uint64_t *w, unsigned k) { w[k >> 6] |= (uint64_t)1 << (k & 63); }

/* Every bit k moves to k + shift (older); bits past the window fall off. */
static void window_shift(uint64_t *w, unsigned words, unsigned bits, uint32_t shift)
{
    unsigned whole, part;
    if (shift >= bits) {
        memset(w, 0, words * sizeof *w);
        return;
    }
    whole = shift >> 6;
    part = shift & 63;
    for (unsigned i = words; i-- > 0;) {
        uint64_t v = 0;
        if (i >= whole) {
            v = w[i - whole] << part;
            if (part != 0 && i - whole >= 1)
                v |= w[i - whole - 1] >> (64 - part);
        }
        w[i] = v;
    }
    if (bits & 63)
        w[words - 1] &= ((uint64_t)1 << (bits & 63)) - 1;
}

/* srtp_rdbx_check */
static int replay_check(const wl_srtp *s, const uint64_t *w, int32_t delta)
{
    if (delta > 0)
        return WL_OK;
    if ((int64_t)s->window_bits - 1 + delta < 0)
        return WL_REPLAY_OLD;
    if (window_bit(w, (unsigned)-delta))
        return WL_REPLAY_FAIL;
    return WL_OK;
}

/* srtp_rdbx_add_index */
static void replay_add(const wl_srtp *s, wl_stream *stream, uint64_t *w, int32_t delta)
{
    if (delta > 0) {
        stream->index += (uint16_t)delta;
        window_shift(w, s->window_words, s->window_bits, (uint32_t)delta);
        window_set(w, 0);
    } else if ((int64_t)s->window_bits - 1 + delta >= 0) {
        window_set(w, (unsigned)-delta);
    }
}

/* srtp_rdb_check; a stream not yet created has libsrtp's initial rdb. */
static int rtcp_check(const wl_stream *stream, uint32_t index)
{
    uint32_t start = stream ? stream->rtcp_start : 0, k;
    if (index >= start + RTCP_WINDOW)
        return WL_OK;
    if (index < start)
        return WL_REPLAY_OLD;
    k = index - start;
    if (stream && ((stream->rtcp_mask[k >> 6] >> (k & 63)) & 1))
        return WL_REPLAY_FAIL;
    return WL_OK;
}

/* srtp_rdb_add_index */
static void rtcp_add(wl_stream *stream, uint32_t index)
{
    uint32_t delta;
    uint64_t *m = stream->rtcp_mask;
    if (index < stream->rtcp_start)
        return;
    delta = index - stream->rtcp_start;
    if (delta >= RTCP_WINDOW) {
        delta -= RTCP_WINDOW - 1;
        /* bit k moves to k - delta (libsrtp's v128_left_shift) */
        if (delta >= 128) {
            m[0] = m[1] = 0;
        } else if (delta >= 64) {
            m[0] = m[1] >> (delta - 64);
            m[1] = 0;
        } else if (delta > 0) {
            m[0] = (m[0] >> delta) | (m[1] << (64 - delta));
            m[1] >>= delta;
        }
        stream->rtcp_start += delta;
        delta = RTCP_WINDOW - 1;
    }
    m[delta >> 6] |= (uint64_t)1 << (delta & 63);
}

/* ---- ciphers ------------------------------------------------------------------ */

static int ctr_crypt(EVP_CIPHER_CTX *ctx, const uint8_t iv[16], uint8_t *data, size_t length)
{
    int written = 0;
    if (!EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv))
        return 0;
    return length == 0 || EVP_EncryptUpdate(ctx, data, &written, data, (int)length);
}

/* HMAC-SHA1 of a || b, all 20 octets. */
static int hmac(EVP_MAC_CTX *ctx, const uint8_t *a, size_t a_length, const uint8_t *b,
                size_t b_length, uint8_t out[20])
{
    size_t written = 0;
    return EVP_MAC_init(ctx, NULL, 0, NULL) && EVP_MAC_update(ctx, a, a_length) &&
           (b_length == 0 || EVP_MAC_update(ctx, b, b_length)) &&
           EVP_MAC_final(ctx, out, &written, 20) && written == 20;
}

/* AES-GCM over data in place, authenticating a || b; the tag to ``tag``. */
static int gcm_seal(EVP_CIPHER_CTX *ctx, const uint8_t iv[12], const uint8_t *a, size_t a_length,
                    const uint8_t *b, size_t b_length, uint8_t *data, size_t length,
                    uint8_t tag[16])
{
    int written = 0;
    uint8_t end[16];
    return EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) &&
           (a_length == 0 || EVP_EncryptUpdate(ctx, NULL, &written, a, (int)a_length)) &&
           (b_length == 0 || EVP_EncryptUpdate(ctx, NULL, &written, b, (int)b_length)) &&
           (length == 0 || EVP_EncryptUpdate(ctx, data, &written, data, (int)length)) &&
           EVP_EncryptFinal_ex(ctx, end, &written) &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag);
}

/* The inverse; 0 if the tag does not match (data is then garbage). */
static int gcm_open(EVP_CIPHER_CTX *ctx, const uint8_t iv[12], const uint8_t *a, size_t a_length,
                    const uint8_t *b, size_t b_length, uint8_t *data, size_t length,
                    const uint8_t *tag)
{
    int written = 0;
    uint8_t expected[16], end[16];
    memcpy(expected, tag, sizeof expected);
    return EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, iv) &&
           (a_length == 0 || EVP_DecryptUpdate(ctx, NULL, &written, a, (int)a_length)) &&
           (b_length == 0 || EVP_DecryptUpdate(ctx, NULL, &written, b, (int)b_length)) &&
           (length == 0 || EVP_DecryptUpdate(ctx, data, &written, data, (int)length)) &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, expected) &&
           EVP_DecryptFinal_ex(ctx, end, &written) > 0;
}

/* RFC 3711 4.1.1: (salt || 0x0000) xor (SSRC at octet 4, ROC || SEQ at octet 8) */
static void rtp_ctr_iv(const wl_srtp *s, const uint8_t *packet, uint64_t index, uint8_t iv[16])
{
    uint32_t roc = (uint32_t)(index >> 16);
    uint16_t seq = (uint16_t)index;
    memcpy(iv, s->rtp_salt, 16);
    for (int i = 0; i < 4; i++)
        iv[4 + i] ^= packet[8 + i];
    iv[8] ^= (uint8_t)(roc >> 24);
    iv[9] ^= (uint8_t)(roc >> 16);
    iv[10] ^= (uint8_t)(roc >> 8);
    iv[11] ^= (uint8_t)roc;
    iv[12] ^= (uint8_t)(seq >> 8);
    iv[13] ^= (uint8_t)seq;
}

/* RFC 7714 8.1: salt xor (0x0000 || SSRC || ROC || SEQ) */
static void rtp_gcm_iv(const wl_srtp *s, const uint8_t *packet, uint64_t index, uint8_t iv[12])
{
    uint32_t roc = (uint32_t)(index >> 16);
    uint16_t seq = (uint16_t)index;
    memcpy(iv, s->rtp_salt, 12);
    for (int i = 0; i < 4; i++)
        iv[2 + i] ^= packet[8 + i];
    iv[6] ^= (uint8_t)(roc >> 24);
    iv[7] ^= (uint8_t)(roc >> 16);
    iv[8] ^= (uint8_t)(roc >> 8);
    iv[9] ^= (uint8_t)roc;
    iv[10] ^= (uint8_t)(seq >> 8);
    iv[11] ^= (uint8_t)seq;
}

/* RFC 3711 4.1.1 for SRTCP: the 31-bit index in place of ROC || SEQ */
static void rtcp_ctr_iv(const wl_srtp *s, const uint8_t *packet, uint32_t index, uint8_t iv[16])
{
    memcpy(iv, s->rtcp_salt, 16);
    for (int i = 0; i < 4; i++)
        iv[4 + i] ^= packet[4 + i];
    iv[10] ^= (uint8_t)(index >> 24);
    iv[11] ^= (uint8_t)(index >> 16);
    iv[12] ^= (uint8_t)(index >> 8);
    iv[13] ^= (uint8_t)index;
}

/* RFC 7714 9.1: salt xor (0x0000 || SSRC || 0x0000 || index) */
static void rtcp_gcm_iv(const wl_srtp *s, const uint8_t *packet, uint32_t index, uint8_t iv[12])
{
    memcpy(iv, s->rtcp_salt, 12);
    for (int i = 0; i < 4; i++)
        iv[2 + i] ^= packet[4 + i];
    iv[8] ^= (uint8_t)(index >> 24);
    iv[9] ^= (uint8_t)(index >> 16);
    iv[10] ^= (uint8_t)(index >> 8);
    iv[11] ^= (uint8_t)index;
}

/* ---- SRTP ------------------------------------------------------------------- */

/* srtp_validate_rtp_header: the header's length with CSRCs and extension
 * (where libsrtp starts encrypting), or 0 with WL_BAD_PARAM in *status. */
static size_t rtp_header_length(const uint8_t *p, size_t length, int *status)
{
    size_t header = 12;
    *status = WL_BAD_PARAM;
    if (length < 12)
        return 0;
    header += 4 * (size_t)(p[0] & 0x0F);
    if (length < header)
        return 0;
    if (p[0] & 0x10) {
        if (length < header + 4)
            return 0;
        header += 4 * ((size_t)read16(p + header + 2) + 1);
        if (length < header)
            return 0;
    }
    *status = WL_OK;
    return header;
}

int wl_srtp_protect(wl_srtp *s, uint8_t *p, size_t *length, size_t capacity)
{
    size_t len = *length, header;
    uint64_t est, *window;
    int32_t delta;
    wl_stream *stream;
    int status;

    if (len > MAX_PACKET)
        return WL_BAD_PARAM;
    header = rtp_header_length(p, len, &status);
    if (status)
        return status;
    if (capacity < len + s->info->rtp_tag)
        return WL_BAD_PARAM;
    stream = stream_find(s, read32(p + 8));
    if (stream == NULL && (stream = stream_add(s, read32(p + 8))) == NULL)
        return WL_ALLOC_FAIL;
    window = window_of(s, stream);
    delta = estimate_index(stream->index, read16(p + 2), &est);
    status = replay_check(s, window, delta);
    if (status && (status != WL_REPLAY_FAIL || !s->allow_repeat_tx))
        return status; /* asked to reuse an index */
    replay_add(s, stream, window, delta);

    if (s->info->aead) {
        uint8_t iv[12];
        rtp_gcm_iv(s, p, est, iv);
        if (!gcm_seal(s->rtp_enc, iv, p, header, NULL, 0, p + header, len - header, p + len))
            return WL_CIPHER_FAIL;
        *length = len + 16;
    } else {
        uint8_t iv[16], roc[4], tag[20];
        rtp_ctr_iv(s, p, est, iv);
        if (!ctr_crypt(s->rtp_enc, iv, p + header, len - header))
            return WL_CIPHER_FAIL;
        write32(roc, (uint32_t)(est >> 16));
        if (!hmac(s->rtp_mac, p, len, roc, 4, tag))
            return WL_AUTH_FAIL;
        memcpy(p + len, tag, s->info->rtp_tag);
        *length = len + s->info->rtp_tag;
    }
    return WL_OK;
}

int wl_srtp_unprotect(wl_srtp *s, uint8_t *p, size_t *length)
{
    size_t len = *length, header, plain;
    uint32_t ssrc;
    uint16_t seq;
    uint64_t est;
    int32_t delta;
    wl_stream *stream;
    int status;

    if (len > MAX_PACKET)
        return WL_BAD_PARAM;
    header = rtp_header_length(p, len, &status);
    if (status)
        return status;
    ssrc = read32(p + 8);
    seq = read16(p + 2);
    stream = stream_find(s, ssrc);
    if (stream == NULL) {
        /* libsrtp's provisional stream: its index starts at the sequence number */
        est = seq;
        delta = seq;
    } else {
        delta = estimate_index(stream->index, seq, &est);
        status = replay_check(s, window_of(s, stream), delta);
        if (status)
            return status;
    }

    if (s->info->aead) {
        uint8_t iv[12];
        /* libsrtp compares with (unsigned)(len - 16): a packet shorter than
         * the tag passes here and fails on its length just below. */
        if ((uint64_t)header > (uint64_t)(uint32_t)((int64_t)len - 16))
            return WL_PARSE_ERR;
        if (len - header < 16)
            return WL_CIPHER_FAIL;
        rtp_gcm_iv(s, p, est, iv);
        if (!gcm_open(s->rtp_dec, iv, p, header, NULL, 0, p + header, len - header - 16,
                      p + len - 16))
            return WL_AUTH_FAIL;
        plain = len - 16;
    } else {
        size_t tag_length = s->info->rtp_tag;
        uint8_t iv[16], roc[4], tag[20];
        if (header > len - tag_length)
            return WL_PARSE_ERR;
        plain = len - tag_length;
        write32(roc, (uint32_t)(est >> 16));
        if (!hmac(s->rtp_mac, p, plain, roc, 4, tag))
            return WL_AUTH_FAIL;
        if (CRYPTO_memcmp(tag, p + plain, tag_length) != 0)
            return WL_AUTH_FAIL;
        rtp_ctr_iv(s, p, est, iv);
        if (!ctr_crypt(s->rtp_enc, iv, p + header, plain - header))
            return WL_CIPHER_FAIL;
    }

    if (stream == NULL && (stream = stream_add(s, ssrc)) == NULL)
        return WL_ALLOC_FAIL;
    replay_add(s, stream, window_of(s, stream), delta);
    *length = plain;
    return WL_OK;
}

/* ---- SRTCP ------------------------------------------------------------------ */

int wl_srtp_protect_rtcp(wl_srtp *s, uint8_t *p, size_t *length, size_t capacity)
{
    size_t len = *length;
    uint32_t index;
    uint8_t trailer[4];
    wl_stream *stream;

    if (len < 8 || len > MAX_PACKET)
        return WL_BAD_PARAM;
    if (capacity < len + wl_srtp_rtcp_overhead(s))
        return WL_BAD_PARAM;
    stream = stream_find(s, read32(p + 4));
    if (stream == NULL && (stream = stream_add(s, read32(p + 4))) == NULL)
        return WL_ALLOC_FAIL;
    /* srtp_rdb_increment */
    if (stream->rtcp_start >= 0x7fffffff)
        return WL_KEY_EXPIRED;
    index = ++stream->rtcp_start;
    write32(trailer, SRTCP_E_BIT | index);

    if (s->info->aead) {
        uint8_t iv[12];
        rtcp_gcm_iv(s, p, index, iv);
        if (!gcm_seal(s->rtcp_enc, iv, p, 8, trailer, 4, p + 8, len - 8, p + len))
            return WL_CIPHER_FAIL;
        memcpy(p + len + 16, trailer, 4);
        *length = len + 20;
    } else {
        uint8_t iv[16], tag[20];
        memcpy(p + len, trailer, 4);
        rtcp_ctr_iv(s, p, index, iv);
        if (!ctr_crypt(s->rtcp_enc, iv, p + 8, len - 8))
            return WL_CIPHER_FAIL;
        if (!hmac(s->rtcp_mac, p, len + 4, NULL, 0, tag))
            return WL_AUTH_FAIL;
        memcpy(p + len + 4, tag, s->info->rtcp_tag);
        *length = len + 4 + s->info->rtcp_tag;
    }
    return WL_OK;
}

int wl_srtp_unprotect_rtcp(wl_srtp *s, uint8_t *p, size_t *length)
{
    size_t len = *length, tag_length = s->info->rtcp_tag, plain;
    uint32_t ssrc, index;
    wl_stream *stream;
    int status;

    if (len < 8 + 4 || len > MAX_PACKET)
        return WL_BAD_PARAM;
    ssrc = read32(p + 4);
    stream = stream_find(s, ssrc);
    if (len < 8 + tag_length + 4)
        return WL_BAD_PARAM;

    if (s->info->aead) {
        /* header | ciphertext | tag | E + index */
        const uint8_t *trailer = p + len - 4, *tag = p + len - 4 - 16;
        int encrypted = (trailer[0] & 0x80) != 0;
        uint8_t iv[12];
        index = read32(trailer) & SRTCP_INDEX_MASK;
        status = rtcp_check(stream, index);
        if (status)
            return status;
        rtcp_gcm_iv(s, p, index, iv);
        if (encrypted ? !gcm_open(s->rtcp_dec, iv, p, 8, trailer, 4, p + 8, len - 8 - 20, tag)
                      : !gcm_open(s->rtcp_dec, iv, p, len - 20, trailer, 4, NULL, 0, tag))
            return WL_AUTH_FAIL;
        plain = len - 20;
    } else {
        /* header | ciphertext | E + index | tag */
        const uint8_t *trailer = p + len - tag_length - 4;
        uint8_t iv[16], tag[20];
        if (!(trailer[0] & 0x80))
            return WL_CANT_CHECK; /* the E bit must say what the policy does */
        index = read32(trailer) & SRTCP_INDEX_MASK;
        status = rtcp_check(stream, index);
        if (status)
            return status;
        if (!hmac(s->rtcp_mac, p, len - tag_length, NULL, 0, tag))
            return WL_AUTH_FAIL;
        if (CRYPTO_memcmp(tag, p + len - tag_length, tag_length) != 0)
            return WL_AUTH_FAIL;
        rtcp_ctr_iv(s, p, index, iv);
        if (!ctr_crypt(s->rtcp_enc, iv, p + 8, len - 8 - 4 - tag_length))
            return WL_CIPHER_FAIL;
        plain = len - 4 - tag_length;
    }

    if (stream == NULL && (stream = stream_add(s, ssrc)) == NULL)
        return WL_ALLOC_FAIL;
    rtcp_add(stream, index);
    *length = plain;
    return WL_OK;
}
