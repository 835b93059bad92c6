/* pool/frame: the records a server and its worker processes exchange over a
 * SOCK_SEQPACKET socketpair, one record per packet (so no record is ever
 * split or merged), each optionally carrying one file descriptor
 * (SCM_RIGHTS): the way a large input or output travels without being
 * copied through the socket.
 *
 * A record is a 16-byte header {magic "OF", version, type, payload length,
 * sequence} and at most FRAME_MAX_PAYLOAD bytes of payload. What a payload
 * means belongs to the caller (pool/item.c for jobs and results).
 *
 * Threads: none of its own; the codec is pure, and send/recv only touch the
 * given socket. Ownership: frame_recv hands the caller any descriptor it
 * received (close it); frame_send borrows the one it sends. */
#ifndef OFFLOAD_POOL_FRAME_H
#define OFFLOAD_POOL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_MAGIC 0x464f /* "OF" little-endian */
#define FRAME_VERSION 1
#define FRAME_HDR_SIZE 16
/* Small enough that one packet fits any default socket buffer (~200 KiB). */
#define FRAME_MAX_PAYLOAD (64 * 1024)

typedef enum {
  FRAME_READY = 1, /* worker -> server, once, when it can take jobs */
  FRAME_JOB,       /* server -> worker: run this */
  FRAME_RESULT,    /* worker -> server: the job's outcome */
} frame_type_t;

typedef struct frame_hdr {
  uint16_t magic;
  uint8_t version;
  uint8_t type;
  uint32_t len; /* payload bytes that follow */
  uint64_t seq; /* the job's sequence number (0 for READY) */
} frame_hdr_t;

/* Writes the header for a payload of `len` bytes into out[FRAME_HDR_SIZE]. */
void frame_encode_hdr(uint8_t *out, frame_type_t type, uint64_t seq, size_t len);
/* Checks a received packet of `n` bytes: the magic, version, a known type
 * and a length that matches n. Returns 0 and fills *h, or OFF_EINVAL. */
int frame_decode(const uint8_t *pkt, size_t n, frame_hdr_t *h);

/* Sends one record (with `fd` attached when >= 0). Returns 0, OFF_EINVAL
 * (payload too large), or OFF_ESYS with errno set (EAGAIN on a non-blocking
 * socket whose buffer is full, EPIPE when the peer is gone). */
int frame_send(int sock, frame_type_t type, uint64_t seq, const void *payload, size_t len, int fd);

/* Receives one record into buf[cap] (cap >= FRAME_HDR_SIZE +
 * FRAME_MAX_PAYLOAD), validating it. Returns the packet size (> 0), 0 when
 * the peer closed, OFF_EINVAL for a malformed record (any descriptor it
 * carried is closed), or OFF_ESYS with errno set (EAGAIN: nothing yet).
 * *fd receives a passed descriptor (close-on-exec) or -1. */
int frame_recv(int sock, uint8_t *buf, size_t cap, frame_hdr_t *h, int *fd);

#endif
