/* util/log: one-line logs to stderr. Any thread (stdio locks each line).
 * The level and the format are the only global mutable state besides the
 * stop flag; set them before starting threads. */
#ifndef OFFLOAD_UTIL_LOG_H
#define OFFLOAD_UTIL_LOG_H

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
enum { LOG_TEXT = 0, LOG_JSON = 1 };

extern int log_level;
/* LOG_TEXT: "2026-11-29T16:00:00Z offload info: message"; LOG_JSON:
 * {"time":"2026-11-29T16:00:00.123Z","level":"info","msg":"message"}. */
extern int log_format;

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
