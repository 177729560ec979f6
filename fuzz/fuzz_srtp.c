/* libFuzzer target: SRTP/SRTCP unprotect of arbitrary bytes, and protect then
 * unprotect of arbitrary packets, for every profile (media/native/wl_srtp.c).
 *
 * The first octet picks the profile (bits 0-1) and the operation (bits 2-3);
 * the rest is the packet. Buffers are allocated to the exact size the call may
 * use, so that AddressSanitizer sees any access past them. Sessions live for
 * the whole run (replay windows and streams accumulate, as in a call). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wl_srtp.h"

static const int PROFILES[4] = {WL_AES128_CM_SHA1_80, WL_AES128_CM_SHA1_32,
                                WL_AEAD_AES_128_GCM, WL_AEAD_AES_256_GCM};
static wl_srtp *receivers[4], *senders[4], *readers[4];

/* The key fuzz/seeds.py protects its seed packets with. */
static void fuzz_key(uint8_t key[46])
{
    for (int i = 0; i < 46; i++)
        key[i] = (uint8_t)(i * 7 + 1);
}

static void setup(void)
{
    uint8_t key[46];
    int status;
    fuzz_key(key);
    for (int i = 0; i < 4; i++) {
        receivers[i] = wl_srtp_new(PROFILES[i], key, sizeof key, 1024, 1, &status);
        senders[i] = wl_srtp_new(PROFILES[i], key, sizeof key, 1024, 1, &status);
        readers[i] = wl_srtp_new(PROFILES[i], key, sizeof key, 1024, 1, &status);
        if (!receivers[i] || !senders[i] || !readers[i])
            abort();
    }
}

static void round_trip(int p, const uint8_t *data, size_t size, int rtcp)
{
    size_t capacity = size + (rtcp ? WL_SRTCP_MAX_TRAILER : WL_SRTP_MAX_TRAILER), length = size;
    uint8_t *buffer = malloc(capacity ? capacity : 1);
    if (buffer == NULL)
        return;
    memcpy(buffer, data, size);
    if ((rtcp ? wl_srtp_protect_rtcp(senders[p], buffer, &length, capacity)
              : wl_srtp_protect(senders[p], buffer, &length, capacity)) == WL_OK) {
        if (length > capacity)
            abort();
        if ((rtcp ? wl_srtp_unprotect_rtcp(readers[p], buffer, &length)
                  : wl_srtp_unprotect(readers[p], buffer, &length)) == WL_OK &&
            (length != size || memcmp(buffer, data, size) != 0))
            abort(); /* authenticated, yet not what was protected */
    }
    free(buffer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int p, operation;
    if (receivers[0] == NULL)
        setup();
    if (size < 1)
        return 0;
    p = data[0] & 3;
    operation = (data[0] >> 2) & 3;
    data++;
    size--;
    if (size > 4096)
        size = 4096;
    if (operation < 2) {
        size_t length = size;
        uint8_t *buffer = malloc(size ? size : 1);
        if (buffer == NULL)
            return 0;
        memcpy(buffer, data, size);
        if ((operation == 0 ? wl_srtp_unprotect(receivers[p], buffer, &length)
                            : wl_srtp_unprotect_rtcp(receivers[p], buffer, &length)) == WL_OK &&
            length > size)
            abort();
        free(buffer);
    } else {
        round_trip(p, data, size, operation == 3);
    }
    return 0;
}
