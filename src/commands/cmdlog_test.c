/* cmdlog_test: commands/log, a running command's output tail. The ring
 * (wrapping, positions, a write larger than the ring, reads from before
 * the oldest byte held, reads bounded by the caller's buffer), the table by
 * job id (find while open, gone once closed, readers keep a closed log),
 * reference counts (white box: this file includes log.c), the notify hook,
 * saving the tail (and a save that fails with ENOSPC), and a writer thread
 * against reader threads checking every byte they get against its position
 * (TSan-clean). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands/log.c"

/* The byte printed at position p: never periodic in the ring's size, so a
 * byte read at the wrong position shows. */
static char byte_at(uint64_t p) { return (char)((p * 131u + p / 251u) & 0xff); }

static void write_span(cmdlog_t *l, uint64_t from, size_t len) {
  char *b = malloc(len ? len : 1);
  assert_non_null(b);
  for (size_t i = 0; i < len; i++)
    b[i] = byte_at(from + i);
  cmdlog_write(l, b, len);
  free(b);
}

static void check_span(const char *buf, uint64_t start, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (buf[i] != byte_at(start + i))
      fail_msg("byte %zu (position %llu) is wrong", i, (unsigned long long)(start + i));
}

static unsigned refs_of(cmdlog_t *l) { return atomic_load(&l->refs); }

static void test_ring_positions(void **state) {
  (void)state;
  cmdlog_t *l = cmdlog_open("job-a");
  assert_non_null(l);
  char *buf = malloc(CMDLOG_TAIL);
  assert_non_null(buf);
  uint64_t start = 99, total = 99;
  bool done = true;
  assert_int_equal(cmdlog_read(l, 0, buf, CMDLOG_TAIL, &start, &total, &done), 0);
  assert_true(start == 0 && total == 0 && !done);

  write_span(l, 0, 1000);
  assert_int_equal(cmdlog_read(l, 0, buf, CMDLOG_TAIL, &start, &total, &done), 1000);
  assert_true(start == 0 && total == 1000);
  check_span(buf, 0, 1000);
  /* From a position: what came after it; past the end: nothing. */
  assert_int_equal(cmdlog_read(l, 400, buf, CMDLOG_TAIL, &start, &total, NULL), 600);
  assert_int_equal(start, 400);
  check_span(buf, 400, 600);
  assert_int_equal(cmdlog_read(l, 5000, buf, CMDLOG_TAIL, &start, &total, NULL), 0);
  assert_int_equal(start, 1000);
  /* A small buffer takes the oldest bytes first. */
  assert_int_equal(cmdlog_read(l, 10, buf, 7, &start, NULL, NULL), 7);
  assert_int_equal(start, 10);
  check_span(buf, 10, 7);

  /* Fill past the ring's end, in uneven pieces: the last CMDLOG_TAIL stay. */
  uint64_t at = 1000;
  while (at < 3 * CMDLOG_TAIL + 123) {
    size_t piece = 1 + (size_t)(at % 4099);
    write_span(l, at, piece);
    at += piece;
  }
  assert_int_equal(cmdlog_read(l, 0, buf, CMDLOG_TAIL, &start, &total, NULL), CMDLOG_TAIL);
  assert_int_equal(total, at);
  assert_int_equal(start, at - CMDLOG_TAIL); /* a reader behind learns how far */
  check_span(buf, start, CMDLOG_TAIL);
  /* A read that wraps around the ring's end. */
  uint64_t from = at - 100;
  assert_int_equal(cmdlog_read(l, from, buf, CMDLOG_TAIL, &start, NULL, NULL), 100);
  assert_int_equal(start, from);
  check_span(buf, from, 100);

  /* One write larger than the ring: only its last CMDLOG_TAIL bytes stay,
   * at their positions. */
  size_t big = 3 * CMDLOG_TAIL + 17;
  write_span(l, at, big);
  at += big;
  assert_int_equal(cmdlog_read(l, 0, buf, CMDLOG_TAIL, &start, &total, NULL), CMDLOG_TAIL);
  assert_int_equal(total, at);
  assert_int_equal(start, at - CMDLOG_TAIL);
  check_span(buf, start, CMDLOG_TAIL);
  /* Exactly the ring's size, at an unaligned place. */
  write_span(l, at, CMDLOG_TAIL);
  at += CMDLOG_TAIL;
  assert_int_equal(cmdlog_read(l, 0, buf, CMDLOG_TAIL, &start, &total, NULL), CMDLOG_TAIL);
  assert_int_equal(start, at - CMDLOG_TAIL);
  check_span(buf, start, CMDLOG_TAIL);

  cmdlog_close(l);
  free(buf);
}

static void test_table_and_refs(void **state) {
  (void)state;
  cmdlog_t *a = cmdlog_open("job-a"), *b = cmdlog_open("job-b");
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(refs_of(a), 1);
  cmdlog_t *fa = cmdlog_find("job-a"), *fb = cmdlog_find("job-b");
  assert_ptr_equal(fa, a);
  assert_ptr_equal(fb, b);
  assert_int_equal(refs_of(a), 2);
  assert_null(cmdlog_find("job-c"));
  assert_null(cmdlog_find("job-"));
  assert_ptr_equal(cmdlog_ref(a), a);
  assert_int_equal(refs_of(a), 3);
  cmdlog_unref(a);
  cmdlog_unref(NULL); /* ignored */

  cmdlog_write(a, "hello", 5);
  cmdlog_close(a); /* the writer's reference goes; the reader's stays */
  assert_int_equal(refs_of(a), 1);
  assert_null(cmdlog_find("job-a"));
  assert_ptr_equal(cmdlog_find("job-b"), b); /* the other is untouched */
  cmdlog_unref(b);
  char buf[16];
  uint64_t start, total;
  bool done = false;
  assert_int_equal(cmdlog_read(fa, 0, buf, sizeof buf, &start, &total, &done), 5);
  assert_true(done && total == 5 && memcmp(buf, "hello", 5) == 0);
  cmdlog_unref(fa); /* the last reference frees it (ASan checks) */

  /* A job that runs again opens a new log under the same id. */
  cmdlog_t *again = cmdlog_open("job-a");
  cmdlog_t *found = cmdlog_find("job-a");
  assert_ptr_equal(found, again);
  assert_int_equal(cmdlog_read(found, 0, buf, sizeof buf, NULL, &total, NULL), 0);
  assert_int_equal(total, 0);
  cmdlog_unref(found);
  cmdlog_close(again);
  cmdlog_close(b);
  cmdlog_unref(fb);
  assert_null(cmdlog_find("job-b"));

  /* No memory: NULL, and nothing in the table. */
  fault_arm(FAULT_ALLOC, 1);
  assert_null(cmdlog_open("job-x"));
  fault_arm(FAULT_ALLOC, 0);
  assert_null(cmdlog_find("job-x"));
}

static _Atomic unsigned notified;
static void count_notify(void *ctx) {
  assert_ptr_equal(ctx, &notified);
  atomic_fetch_add(&notified, 1);
}

static void test_notify(void **state) {
  (void)state;
  atomic_store(&notified, 0);
  cmdlog_set_notify(count_notify, &notified);
  cmdlog_t *l = cmdlog_open("job-n");
  assert_int_equal(atomic_load(&notified), 0);
  cmdlog_write(l, "a", 1);
  cmdlog_write(l, "bc", 2);
  assert_int_equal(atomic_load(&notified), 2);
  cmdlog_close(l); /* a closed log is news too */
  assert_int_equal(atomic_load(&notified), 3);
  cmdlog_set_notify(NULL, NULL);
  l = cmdlog_open("job-n");
  cmdlog_write(l, "a", 1);
  cmdlog_close(l);
  assert_int_equal(atomic_load(&notified), 3);
}

static void test_save(void **state) {
  (void)state;
  char dir[] = "/tmp/offload-cmdlog-XXXXXX", path[64], buf[2 * CMDLOG_TAIL];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/" CMDLOG_FILE, dir);
  cmdlog_t *l = cmdlog_open("job-s");
  write_span(l, 0, 70000);
  /* Something was there before: replaced. */
  FILE *old = fopen(path, "w");
  assert_non_null(old);
  for (int i = 0; i < 100000; i++)
    fputc('x', old);
  fclose(old);
  assert_int_equal(cmdlog_save(l, path), 0);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_size, CMDLOG_TAIL);
  FILE *in = fopen(path, "r");
  assert_non_null(in);
  assert_int_equal(fread(buf, 1, sizeof buf, in), CMDLOG_TAIL);
  fclose(in);
  check_span(buf, 70000 - CMDLOG_TAIL, CMDLOG_TAIL);

  /* A disk that is full: -1 with errno. */
  fault_arm(FAULT_CMD_DISK, 1);
  errno = 0;
  assert_int_equal(cmdlog_save(l, path), -1);
  assert_int_equal(errno, ENOSPC);
  fault_arm(FAULT_CMD_DISK, 0);
  cmdlog_close(l);

  /* An empty log saves an empty file, mode 0600. */
  unlink(path);
  l = cmdlog_open("job-s");
  assert_int_equal(cmdlog_save(l, path), 0);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_size, 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  cmdlog_close(l);
  snprintf(path + strlen(dir), sizeof path - strlen(dir), "/no/such/dir");
  l = cmdlog_open("job-s");
  assert_int_equal(cmdlog_save(l, path), -1);
  cmdlog_close(l);
  snprintf(path, sizeof path, "%s/" CMDLOG_FILE, dir);
  unlink(path);
  rmdir(dir);
}

/* ---- one writer, several readers, on threads ---- */

#define THREADS_TOTAL (UINT64_C(8) * CMDLOG_TAIL + 4321)
#define READERS 3

typedef struct shared {
  _Atomic bool opened;
  _Atomic unsigned wakes;
} shared_t;

static void on_wake_count(void *ctx) { atomic_fetch_add(&((shared_t *)ctx)->wakes, 1); }

static void *writer_main(void *arg) {
  shared_t *sh = arg;
  cmdlog_t *l = cmdlog_open("job-t");
  atomic_store(&sh->opened, true);
  uint64_t at = 0;
  while (at < THREADS_TOTAL) {
    /* Mostly small pieces, now and then one larger than the ring. */
    size_t piece = at % 7 == 3 ? CMDLOG_TAIL + 555 : 1 + (size_t)(at * 7919 % 3001);
    if (piece > THREADS_TOTAL - at)
      piece = (size_t)(THREADS_TOTAL - at);
    char *b = malloc(piece);
    for (size_t i = 0; i < piece; i++)
      b[i] = byte_at(at + i);
    cmdlog_write(l, b, piece);
    free(b);
    at += piece;
  }
  cmdlog_close(l);
  return NULL;
}

typedef struct reader {
  shared_t *sh;
  uint64_t got, skipped;
  bool bad;
} reader_t;

static void *reader_main(void *arg) {
  reader_t *r = arg;
  while (!atomic_load(&r->sh->opened))
    usleep(50);
  cmdlog_t *l = cmdlog_find("job-t"); /* NULL if the run already ended */
  char *buf = malloc(CMDLOG_TAIL / 4);
  uint64_t pos = 0, start, total = 0;
  bool done = l == NULL;
  while (l) {
    size_t n = cmdlog_read(l, pos, buf, CMDLOG_TAIL / 4, &start, &total, &done);
    if (start < pos)
      r->bad = true;
    r->skipped += start - pos;
    for (size_t i = 0; i < n; i++)
      if (buf[i] != byte_at(start + i))
        r->bad = true;
    r->got += n;
    pos = start + n;
    if (done && pos == total)
      break;
    if (n == 0)
      usleep(20);
  }
  if (l && pos != THREADS_TOTAL)
    r->bad = true;
  cmdlog_unref(l);
  free(buf);
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  shared_t sh = {0};
  cmdlog_set_notify(on_wake_count, &sh);
  pthread_t w, rd[READERS];
  reader_t r[READERS];
  for (int i = 0; i < READERS; i++) {
    r[i] = (reader_t){.sh = &sh};
    assert_int_equal(pthread_create(&rd[i], NULL, reader_main, &r[i]), 0);
  }
  assert_int_equal(pthread_create(&w, NULL, writer_main, &sh), 0);
  pthread_join(w, NULL);
  for (int i = 0; i < READERS; i++) {
    pthread_join(rd[i], NULL);
    assert_false(r[i].bad);
    /* Every position is either read or counted as skipped. */
    if (r[i].got + r[i].skipped)
      assert_int_equal(r[i].got + r[i].skipped, THREADS_TOTAL);
  }
  assert_true(atomic_load(&sh.wakes) > 1);
  cmdlog_set_notify(NULL, NULL);
  assert_null(cmdlog_find("job-t"));
}

/* Writes larger than the ring, each at once: a reader never sees a
 * position whose byte is not there yet (the total and the bytes change
 * under one lock). */
#define BIG_WRITES 200

static _Atomic bool big_done;

static void *big_writer_main(void *arg) {
  cmdlog_t *l = arg;
  size_t piece = 2 * CMDLOG_TAIL + 1;
  char *b = malloc(piece);
  uint64_t at = 0;
  for (int k = 0; k < BIG_WRITES; k++, at += piece) {
    for (size_t i = 0; i < piece; i++)
      b[i] = byte_at(at + i);
    cmdlog_write(l, b, piece);
  }
  free(b);
  atomic_store(&big_done, true);
  return NULL;
}

static void *big_reader_main(void *arg) {
  reader_t *r = arg;
  cmdlog_t *l = cmdlog_find("job-big");
  char *buf = malloc(CMDLOG_TAIL);
  while (l && !atomic_load(&big_done)) {
    uint64_t start;
    size_t n = cmdlog_read(l, 0, buf, CMDLOG_TAIL, &start, NULL, NULL);
    for (size_t i = 0; i < n && !r->bad; i++)
      r->bad = buf[i] != byte_at(start + i);
    r->got += n;
  }
  cmdlog_unref(l);
  free(buf);
  return NULL;
}

static void test_threads_big_writes(void **state) {
  (void)state;
  atomic_store(&big_done, false);
  cmdlog_t *l = cmdlog_open("job-big");
  pthread_t w, rd[READERS];
  reader_t r[READERS];
  for (int i = 0; i < READERS; i++) {
    r[i] = (reader_t){0};
    assert_int_equal(pthread_create(&rd[i], NULL, big_reader_main, &r[i]), 0);
  }
  assert_int_equal(pthread_create(&w, NULL, big_writer_main, l), 0);
  pthread_join(w, NULL);
  for (int i = 0; i < READERS; i++) {
    pthread_join(rd[i], NULL);
    assert_false(r[i].bad);
  }
  cmdlog_close(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ring_positions), cmocka_unit_test(test_table_and_refs),
      cmocka_unit_test(test_notify),         cmocka_unit_test(test_save),
      cmocka_unit_test(test_threads),        cmocka_unit_test(test_threads_big_writes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
