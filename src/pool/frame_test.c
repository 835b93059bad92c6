/* frame_test: the record codec and its transport (pool/frame.h): header
 * round trip and validation, one record per SOCK_SEQPACKET packet, a
 * descriptor passed beside a record, end of stream, and malformed input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pool/frame.h"
#include "util/err.h"

#define CAP (FRAME_HDR_SIZE + FRAME_MAX_PAYLOAD)

static void pair(int sv[2]) { assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0); }

static void test_header_round_trip(void **state) {
  (void)state;
  uint8_t pkt[FRAME_HDR_SIZE + 5];
  frame_encode_hdr(pkt, FRAME_RESULT, UINT64_C(0x1122334455667788), 5);
  memcpy(pkt + FRAME_HDR_SIZE, "hello", 5);
  frame_hdr_t h;
  assert_int_equal(frame_decode(pkt, sizeof pkt, &h), 0);
  assert_int_equal(h.type, FRAME_RESULT);
  assert_int_equal(h.len, 5);
  assert_true(h.seq == UINT64_C(0x1122334455667788));
  assert_int_equal(h.version, FRAME_VERSION);
}

static void test_header_rejects(void **state) {
  (void)state;
  uint8_t pkt[FRAME_HDR_SIZE + 4];
  frame_hdr_t h;
  frame_encode_hdr(pkt, FRAME_JOB, 1, 4);
  assert_int_equal(frame_decode(pkt, FRAME_HDR_SIZE - 1, &h), OFF_EINVAL); /* short */
  assert_int_equal(frame_decode(pkt, FRAME_HDR_SIZE + 3, &h), OFF_EINVAL); /* length mismatch */
  uint8_t bad[sizeof pkt];
  memcpy(bad, pkt, sizeof pkt);
  bad[0] ^= 0xff; /* magic */
  assert_int_equal(frame_decode(bad, sizeof bad, &h), OFF_EINVAL);
  memcpy(bad, pkt, sizeof pkt);
  bad[2] = FRAME_VERSION + 1;
  assert_int_equal(frame_decode(bad, sizeof bad, &h), OFF_EINVAL);
  memcpy(bad, pkt, sizeof pkt);
  bad[3] = 0; /* type */
  assert_int_equal(frame_decode(bad, sizeof bad, &h), OFF_EINVAL);
  bad[3] = FRAME_RESULT + 1;
  assert_int_equal(frame_decode(bad, sizeof bad, &h), OFF_EINVAL);
  frame_encode_hdr(bad, FRAME_JOB, 1, (size_t)FRAME_MAX_PAYLOAD + 1); /* too long, whatever follows */
  assert_int_equal(frame_decode(bad, sizeof bad, &h), OFF_EINVAL);
}

static void test_send_recv_records(void **state) {
  (void)state;
  int sv[2];
  pair(sv);
  uint8_t *buf = malloc(CAP);
  assert_non_null(buf);
  /* Two records stay two records: SEQPACKET keeps the boundaries. */
  assert_int_equal(frame_send(sv[0], FRAME_READY, 0, NULL, 0, -1), 0);
  assert_int_equal(frame_send(sv[0], FRAME_JOB, 42, "abc", 3, -1), 0);
  frame_hdr_t h;
  int fd;
  assert_int_equal(frame_recv(sv[1], buf, CAP, &h, &fd), FRAME_HDR_SIZE);
  assert_int_equal(h.type, FRAME_READY);
  assert_int_equal(fd, -1);
  assert_int_equal(frame_recv(sv[1], buf, CAP, &h, &fd), FRAME_HDR_SIZE + 3);
  assert_int_equal(h.type, FRAME_JOB);
  assert_true(h.seq == 42);
  assert_memory_equal(buf + FRAME_HDR_SIZE, "abc", 3);
  /* The largest payload fits one packet. */
  char *big = malloc(FRAME_MAX_PAYLOAD);
  memset(big, 'x', FRAME_MAX_PAYLOAD);
  assert_int_equal(frame_send(sv[0], FRAME_RESULT, 7, big, FRAME_MAX_PAYLOAD, -1), 0);
  assert_int_equal(frame_recv(sv[1], buf, CAP, &h, &fd), CAP);
  assert_int_equal(h.len, FRAME_MAX_PAYLOAD);
  assert_int_equal(frame_send(sv[0], FRAME_RESULT, 7, big, FRAME_MAX_PAYLOAD + 1, -1), OFF_EINVAL);
  free(big);
  /* Nothing waiting on a non-blocking socket: OFF_ESYS with EAGAIN. */
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  assert_int_equal(frame_recv(sv[1], buf, CAP, &h, &fd), OFF_ESYS);
  assert_int_equal(errno, EAGAIN);
  /* The peer closing reads as 0; sending to a closed peer is EPIPE, no SIGPIPE. */
  close(sv[0]);
  assert_int_equal(frame_recv(sv[1], buf, CAP, &h, &fd), 0);
  assert_int_equal(frame_send(sv[1], FRAME_READY, 0, NULL, 0, -1), OFF_ESYS);
  assert_int_equal(errno, EPIPE);
  close(sv[1]);
  free(buf);
}

static void test_fd_passing(void **state) {
  (void)state;
  /* A memfd crosses with its record: what was written on one side is read
   * on the other, through a different descriptor number. */
  int sv[2];
  pair(sv);
  int mfd = memfd_create("frame-test", MFD_CLOEXEC);
  assert_true(mfd >= 0);
  const char text[] = "a large input travels by descriptor";
  assert_int_equal(write(mfd, text, sizeof text), (ssize_t)sizeof text);
  assert_int_equal(frame_send(sv[0], FRAME_JOB, 9, "x", 1, mfd), 0);
  close(mfd);
  uint8_t *buf = malloc(CAP);
  frame_hdr_t h;
  int fd;
  assert_int_equal(frame_recv(sv[1], buf, CAP, &h, &fd), FRAME_HDR_SIZE + 1);
  assert_true(fd >= 0);
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  char got[sizeof text];
  assert_int_equal(pread(fd, got, sizeof got, 0), (ssize_t)sizeof text);
  assert_string_equal(got, text);
  close(fd);
  close(sv[0]);
  close(sv[1]);
  free(buf);
}

static void test_malformed_record_closes_its_fd(void **state) {
  (void)state;
  /* A packet that is not a record is refused, and a descriptor that came
   * with it is closed rather than leaked. */
  int sv[2];
  pair(sv);
  int mfd = memfd_create("frame-test", MFD_CLOEXEC);
  char junk[8] = "garbage";
  struct iovec iov = {junk, sizeof junk};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &mfd, sizeof mfd);
  assert_int_equal(sendmsg(sv[0], &msg, 0), (ssize_t)sizeof junk);
  close(mfd);
  int before = 0;
  for (int i = 0; i < 1024; i++)
    before += fcntl(i, F_GETFD) != -1;
  uint8_t *buf = malloc(CAP);
  frame_hdr_t h;
  int fd = 123;
  assert_int_equal(frame_recv(sv[1], buf, CAP, &h, &fd), OFF_EINVAL);
  assert_int_equal(fd, -1);
  int after = 0;
  for (int i = 0; i < 1024; i++)
    after += fcntl(i, F_GETFD) != -1;
  assert_int_equal(after, before);
  close(sv[0]);
  close(sv[1]);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_header_round_trip), cmocka_unit_test(test_header_rejects),
      cmocka_unit_test(test_send_recv_records), cmocka_unit_test(test_fd_passing),
      cmocka_unit_test(test_malformed_record_closes_its_fd),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
