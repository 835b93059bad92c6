/* pool/frame: the record codec and the sendmsg/recvmsg around it. See
 * pool/frame.h. */
#include "pool/frame.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/err.h"

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

void frame_encode_hdr(uint8_t *out, frame_type_t type, uint64_t seq, size_t len) {
  put16(out, FRAME_MAGIC);
  out[2] = FRAME_VERSION;
  out[3] = (uint8_t)type;
  put32(out + 4, (uint32_t)len);
  put64(out + 8, seq);
}

int frame_decode(const uint8_t *pkt, size_t n, frame_hdr_t *h) {
  if (n < FRAME_HDR_SIZE)
    return OFF_EINVAL;
  memcpy(&h->magic, pkt, 2);
  h->version = pkt[2];
  h->type = pkt[3];
  memcpy(&h->len, pkt + 4, 4);
  memcpy(&h->seq, pkt + 8, 8);
  if (h->magic != FRAME_MAGIC || h->version != FRAME_VERSION)
    return OFF_EINVAL;
  if (h->type < FRAME_READY || h->type > FRAME_RESULT)
    return OFF_EINVAL;
  if (h->len > FRAME_MAX_PAYLOAD || (size_t)h->len != n - FRAME_HDR_SIZE)
    return OFF_EINVAL;
  return 0;
}

int frame_send(int sock, frame_type_t type, uint64_t seq, const void *payload, size_t len, int fd) {
  if (len > FRAME_MAX_PAYLOAD)
    return OFF_EINVAL;
  uint8_t hdr[FRAME_HDR_SIZE];
  frame_encode_hdr(hdr, type, seq, len);
  struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)payload, len}};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct msghdr msg = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
  if (fd >= 0) {
    memset(&ctl, 0, sizeof ctl);
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof ctl.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t n;
  do
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return OFF_ESYS;
  return 0; /* SOCK_SEQPACKET: all of it or nothing */
}

int frame_recv(int sock, uint8_t *buf, size_t cap, frame_hdr_t *h, int *fd) {
  *fd = -1;
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * 4)];
  } ctl;
  struct iovec iov = {buf, cap};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  ssize_t n;
  do
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return OFF_ESYS;
  /* Take every passed descriptor first, so none leaks whatever follows. */
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      if (*fd < 0)
        *fd = got;
      else
        close(got); /* one descriptor per record */
    }
  }
  if (n == 0 && !(msg.msg_flags & MSG_CTRUNC)) {
    if (*fd >= 0) /* an empty packet with a descriptor: not a record */
      close(*fd);
    *fd = -1;
    return 0;
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || frame_decode(buf, (size_t)n, h) != 0) {
    if (*fd >= 0)
      close(*fd);
    *fd = -1;
    return OFF_EINVAL;
  }
  return (int)n;
}
