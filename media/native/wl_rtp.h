/* The RTP header of a forwarded packet, rewritten as media/fastpath.py does:
 * ``wl_rtp_plan`` is ``plan_header`` (the destination's header, from the
 * packet's clear header as it arrived) and ``wl_rtp_rewrite`` is
 * ``stamp(plan, ...) + data[payload_at:]`` as ``OutboundStream.forward_steady``
 * builds it. Every index into the packet is checked against its length; the
 * fuzz targets in fuzz/ run both on arbitrary bytes.
 */
#ifndef WL_RTP_H
#define WL_RTP_H

#include <stddef.h>
#include <stdint.h>

/* The longest header either function writes: 16 octets and the extension
 * elements of a plan (mid, abs-send-time, audio level, transport-wide
 * sequence number, padding) — or a head given by the caller, up to this. */
#define WL_MAX_HEAD 256

/* What a source extension id becomes on the destination (fastpath.ExtensionPlan). */
enum {
    WL_EXT_DROP = 0,          /* not forwarded (mid, rid, transport-cc, unknown) */
    WL_EXT_ABS_SEND_TIME = 1, /* forwarded with its 3-octet value */
    WL_EXT_AUDIO_LEVEL = 2,   /* forwarded with its 1-octet value */
    WL_EXT_SLOW = 3,          /* the general path must re-encode it (toffset) */
};

typedef struct {
    uint8_t kind[16];            /* per source id 0..15: WL_EXT_* */
    uint8_t abs_send_time_id;    /* destination ids (1..14) of the forwarded ones */
    uint8_t audio_level_id;
    uint8_t transport_id;        /* 0: the destination has no transport-wide number */
    uint8_t payload_type;        /* 0..127 */
    uint32_t ssrc;
    uint8_t mid_element[17];     /* the destination's mid as a one-byte element */
    uint8_t mid_length;          /* 0..17 */
} wl_plan;

typedef struct {
    size_t head_length;
    size_t payload_at;   /* where the payload starts in the packet planned from */
    size_t transport_at; /* where the transport-wide number goes in the head (0: none) */
    uint8_t head[WL_MAX_HEAD];
} wl_header;

/* The destination's header for the RTP packet data[0:length] (protected or
 * not: only the clear header is read), 1; or 0 when the general path must
 * take it (padding, CSRCs, a two-byte or malformed extension block, an
 * extension to re-encode or of an unexpected size). */
int wl_rtp_plan(const uint8_t *data, size_t length, const wl_plan *plan, wl_header *out);

typedef struct {
    const uint8_t *head;
    size_t head_length;  /* 8..WL_MAX_HEAD */
    size_t payload_at;
    size_t transport_at; /* 0, or where 2 octets fit in the head */
    uint16_t seq_offset;
    uint32_t ts_offset;
    uint16_t transport_sequence;
} wl_rewrite;

/* out[0:*out_length] = head stamped with (sequence number + seq_offset,
 * timestamp + ts_offset, transport_sequence) || plain[payload_at:]; 1, or 0
 * (nothing written) if an index is out of bounds or it does not fit in
 * ``capacity``. */
int wl_rtp_rewrite(const uint8_t *plain, size_t plain_length, const wl_rewrite *rewrite,
                   uint8_t *out, size_t capacity, size_t *out_length);

/* The checks wl_rtp_rewrite makes of a rewrite alone (without the packet). */
int wl_rtp_rewrite_valid(const wl_rewrite *rewrite);

#endif
