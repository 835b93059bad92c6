/* util/log: see log.h. A line is written with one fprintf to the
 * unbuffered stderr: one write(2), so it stays whole beside the access
 * log's writer (util/logq.c), which writes at most PIPE_BUF at a time. */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/buf.h"
#include "util/clock.h"
#include "util/logfmt.h"

int log_level = LOG_INFO;
int log_format = LOG_TEXT;

void log_msg(int level, const char *fmt, ...) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  if (level > log_level)
    return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (log_format == LOG_JSON) {
    char when[LOGFMT_TIME_LEN];
    logfmt_time(when, clock_wall_ms());
    buf_t b = BUF_INIT;
    if (buf_printf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":", when, names[level]) == 0 &&
        logfmt_json(&b, line, strlen(line)) == 0 && buf_puts(&b, "}\n") == 0) {
      fputs(b.data, stderr);
      buf_free(&b);
      return;
    }
    buf_free(&b); /* out of memory: the text line below */
  }
  char when[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  fprintf(stderr, "%s offload %s: %s\n", when, names[level], line);
}
