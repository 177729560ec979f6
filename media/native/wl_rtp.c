/* RTP header plan and rewrite (wl_rtp.h), as media/fastpath.py. */
#include "wl_rtp.h"

#include <string.h>

static uint16_t read16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static uint32_t read32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void write16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void write32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int wl_rtp_plan(const uint8_t *data, size_t length, const wl_plan *plan, wl_header *out)
{
    const uint8_t *abs_send_time = NULL, *audio_level = NULL;
    uint8_t elements[17 + 4 + 2 + 3 + 3];
    size_t payload_at = 12, count = 0;

    if (length < 12 || (data[0] & 0x2F))
        return 0; /* short, padding or CSRCs */
    if (data[0] & 0x10) {
        size_t at = 16, end;
        if (length < 16 || data[12] != 0xBE || data[13] != 0xDE)
            return 0; /* not a one-byte-header block */
        end = 16 + 4 * (size_t)read16(data + 14);
        if (end > length)
            return 0;
        while (at < end) {
            uint8_t byte = data[at], id = byte >> 4, kind;
            size_t size = (size_t)(byte & 0x0F) + 1;
            if (byte == 0) {
                at++; /* padding */
                continue;
            }
            if (id == 15 || at + 1 + size > end)
                return 0;
            kind = plan->kind[id];
            if (kind == WL_EXT_SLOW)
                return 0;
            if (kind == WL_EXT_ABS_SEND_TIME && plan->abs_send_time_id) {
                if (size != 3)
                    return 0;
                abs_send_time = data + at + 1; /* the last one wins, as in fastpath */
            } else if (kind == WL_EXT_AUDIO_LEVEL && plan->audio_level_id) {
                if (size != 1)
                    return 0;
                audio_level = data + at + 1;
            }
            at += 1 + size;
        }
        payload_at = end;
    }

    /* mid, then the kept values in the general path's order, then the
     * transport-wide sequence number (set per packet) */
    memcpy(elements, plan->mid_element, plan->mid_length > 17 ? 17 : plan->mid_length);
    count = plan->mid_length > 17 ? 17 : plan->mid_length;
    if (abs_send_time != NULL) {
        elements[count++] = (uint8_t)(((plan->abs_send_time_id & 0x0F) << 4) | 2);
        memcpy(elements + count, abs_send_time, 3);
        count += 3;
    }
    if (audio_level != NULL) {
        elements[count++] = (uint8_t)((plan->audio_level_id & 0x0F) << 4);
        elements[count++] = *audio_level;
    }
    out->transport_at = 0;
    if (plan->transport_id) {
        elements[count++] = (uint8_t)(((plan->transport_id & 0x0F) << 4) | 1);
        out->transport_at = 16 + count;
        elements[count++] = 0;
        elements[count++] = 0;
    }
    memset(out->head, 0, 16);
    if (count) {
        while (count % 4)
            elements[count++] = 0;
        out->head[0] = 0x90;
        out->head[12] = 0xBE;
        out->head[13] = 0xDE;
        write16(out->head + 14, (uint16_t)(count / 4));
        memcpy(out->head + 16, elements, count);
        out->head_length = 16 + count;
    } else {
        out->head[0] = 0x80;
        out->head_length = 12;
    }
    out->head[1] = (uint8_t)((data[1] & 0x80) | (plan->payload_type & 0x7F));
    write32(out->head + 8, plan->ssrc);
    out->payload_at = payload_at;
    return 1;
}

int wl_rtp_rewrite_valid(const wl_rewrite *r)
{
    return r->head != NULL && r->head_length >= 8 && r->head_length <= WL_MAX_HEAD &&
           (r->transport_at == 0 ||
            (r->transport_at < r->head_length && r->head_length - r->transport_at >= 2));
}

int wl_rtp_rewrite(const uint8_t *plain, size_t plain_length, const wl_rewrite *r, uint8_t *out,
                   size_t capacity, size_t *out_length)
{
    size_t payload;
    if (!wl_rtp_rewrite_valid(r) || plain_length < 8 || r->payload_at > plain_length)
        return 0;
    payload = plain_length - r->payload_at;
    if (r->head_length > capacity || payload > capacity - r->head_length)
        return 0;
    memcpy(out, r->head, r->head_length);
    write16(out + 2, (uint16_t)(read16(plain + 2) + r->seq_offset));
    write32(out + 4, read32(plain + 4) + r->ts_offset);
    if (r->transport_at)
        write16(out + r->transport_at, r->transport_sequence);
    memcpy(out + r->head_length, plain + r->payload_at, payload);
    *out_length = r->head_length + payload;
    return 1;
}
