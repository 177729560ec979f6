/* libFuzzer target: the header plan of arbitrary packets under arbitrary plans,
 * and the rewrite with arbitrary heads, offsets and indices
 * (media/native/wl_rtp.c).
 *
 * The first 44 octets make the plan and the rewrite's numbers; the rest is the
 * packet. Output buffers are allocated to the exact size, so that
 * AddressSanitizer sees any write past them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wl_rtp.h"

#define CONFIG 44

static void rewrite_into(const uint8_t *plain, size_t plain_length, const wl_rewrite *r,
                         size_t capacity)
{
    uint8_t *out = malloc(capacity ? capacity : 1);
    size_t length = 0;
    if (out == NULL)
        return;
    if (wl_rtp_rewrite(plain, plain_length, r, out, capacity, &length)) {
        if (length > capacity || length != r->head_length + plain_length - r->payload_at)
            abort();
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wl_plan plan;
    wl_header header;
    wl_rewrite r;
    const uint8_t *packet = data + CONFIG;
    size_t length;
    if (size < CONFIG)
        return 0;
    length = size - CONFIG;
    for (int i = 0; i < 16; i++)
        plan.kind[i] = data[i] & 3;
    plan.abs_send_time_id = data[16] % 15;
    plan.audio_level_id = data[17] % 15;
    plan.transport_id = data[18] % 15;
    plan.payload_type = data[19] & 0x7F;
    plan.ssrc = ((uint32_t)data[20] << 24) | ((uint32_t)data[21] << 16) | data[22];
    plan.mid_length = data[23] % 18;
    memcpy(plan.mid_element, data + 24, 17);

    if (wl_rtp_plan(packet, length, &plan, &header)) {
        size_t exact;
        if (header.head_length < 12 || header.head_length > WL_MAX_HEAD ||
            header.payload_at > length ||
            (header.transport_at && header.transport_at + 2 > header.head_length))
            abort();
        r.head = header.head;
        r.head_length = header.head_length;
        r.payload_at = header.payload_at;
        r.transport_at = header.transport_at;
        r.seq_offset = (uint16_t)((data[41] << 8) | data[42]);
        r.ts_offset = (uint32_t)data[43] * 0x01010101u;
        r.transport_sequence = (uint16_t)(data[41] ^ data[42]);
        exact = header.head_length + length - header.payload_at;
        rewrite_into(packet, length, &r, exact);
        if (exact > 0)
            rewrite_into(packet, length, &r, exact - 1);
    }

    /* the rewrite alone, with the packet as its own head and any numbers */
    r.head = packet;
    r.head_length = length < data[41] ? length : data[41];
    r.payload_at = (size_t)data[42] * 8;
    r.transport_at = data[43];
    r.seq_offset = data[0];
    r.ts_offset = data[1];
    r.transport_sequence = data[2];
    rewrite_into(packet, length, &r, (size_t)data[40] * 8);
    return 0;
}
