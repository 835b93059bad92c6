/* main: the command line. Parses flags into a server_config_t and runs the
 * server; no other logic lives here. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "util/log.h"

static void usage(FILE *out) {
  server_config_t d;
  server_config_defaults(&d);
  fprintf(out,
          "usage: offload serve [flags]\n"
          "\n"
          "Runs the offload HTTP job server: CPU-heavy jobs run on a pool of worker\n"
          "threads while the event loop keeps answering every other request.\n"
          "\n"
          "  --host ADDR              address to listen on (default %s)\n"
          "  --port N                 TCP port, 0 picks a free one (default %d)\n"
          "  --workers N              worker threads (default %u = online CPUs)\n"
          "  --max-queue N            jobs that may wait for a worker (default %zu)\n"
          "  --max-iterations N       largest heavyIterations for report jobs (default %" PRId64 ")\n"
          "  --max-body BYTES         largest request body (default %zu)\n"
          "  --job-timeout-ms N       default job timeout from start of processing, 0 = none (default %" PRId64 ")\n"
          "  --retention-s N          keep finished jobs this long (default %" PRId64 ")\n"
          "  --max-finished N         keep at most this many finished jobs (default %zu)\n"
          "  --keepalive-timeout-s N  close idle keep-alive connections after N s (default %" PRId64 ")\n"
          "  --max-connections N      open connections at most; more are closed at once (default %zu)\n"
          "  --drain-timeout-s N      on SIGTERM/SIGINT, let running jobs finish this long (default %" PRId64 ")\n"
          "  --request-timeout-ms N   a request head must arrive within N ms of its first byte (or of\n"
          "                           the connection opening), its body within N ms more; else the\n"
          "                           connection is closed (default %" PRId64 ")\n"
          "  --worker-nice N          niceness added to worker threads, 0..19 (default %d)\n"
          "  --log-level LEVEL        error, warn, info or debug (default info)\n"
          "  --inline                 DEMONSTRATION ONLY, never for production: run jobs on the\n"
          "                           event-loop thread, blocking every other request meanwhile\n"
          "  -h, --help               this text\n",
          d.host, d.port, d.workers, d.max_queue, d.max_iterations, d.max_body, d.job_timeout_ms, d.retention_s,
          d.max_finished, d.keepalive_timeout_s, d.max_connections, d.drain_timeout_s, d.request_timeout_ms,
          d.worker_nice);
}

/* Parses a decimal integer in [min, max] or exits with a message naming the flag. */
static int64_t int_flag(const char *flag, const char *text, int64_t min, int64_t max) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || end == text || *end || v < min || v > max) {
    fprintf(stderr, "offload: --%s must be an integer from %" PRId64 " to %" PRId64 "; got \"%s\"\n", flag, min, max,
            text);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "serve") != 0) {
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
      usage(stdout);
      return 0;
    }
    usage(stderr);
    return 2;
  }
  server_config_t cfg;
  server_config_defaults(&cfg);

  enum {
    O_HOST = 256,
    O_PORT,
    O_WORKERS,
    O_MAX_QUEUE,
    O_MAX_ITER,
    O_MAX_BODY,
    O_JOB_TIMEOUT,
    O_RETENTION,
    O_MAX_FINISHED,
    O_KEEPALIVE,
    O_MAX_CONN,
    O_DRAIN,
    O_REQ_TIMEOUT,
    O_NICE,
    O_LOG,
    O_INLINE,
  };
  static const struct option opts[] = {
      {"host", required_argument, NULL, O_HOST},
      {"port", required_argument, NULL, O_PORT},
      {"workers", required_argument, NULL, O_WORKERS},
      {"max-queue", required_argument, NULL, O_MAX_QUEUE},
      {"max-iterations", required_argument, NULL, O_MAX_ITER},
      {"max-body", required_argument, NULL, O_MAX_BODY},
      {"job-timeout-ms", required_argument, NULL, O_JOB_TIMEOUT},
      {"retention-s", required_argument, NULL, O_RETENTION},
      {"max-finished", required_argument, NULL, O_MAX_FINISHED},
      {"keepalive-timeout-s", required_argument, NULL, O_KEEPALIVE},
      {"max-connections", required_argument, NULL, O_MAX_CONN},
      {"drain-timeout-s", required_argument, NULL, O_DRAIN},
      {"request-timeout-ms", required_argument, NULL, O_REQ_TIMEOUT},
      {"worker-nice", required_argument, NULL, O_NICE},
      {"log-level", required_argument, NULL, O_LOG},
      {"inline", no_argument, NULL, O_INLINE},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  optind = 2;
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case O_HOST: cfg.host = optarg; break;
    case O_PORT: cfg.port = (int)int_flag("port", optarg, 0, 65535); break;
    case O_WORKERS: cfg.workers = (unsigned)int_flag("workers", optarg, 1, 1024); break;
    case O_MAX_QUEUE: cfg.max_queue = (size_t)int_flag("max-queue", optarg, 1, 100000000); break;
    case O_MAX_ITER: cfg.max_iterations = int_flag("max-iterations", optarg, 1, INT64_C(1000000000000000)); break;
    case O_MAX_BODY: cfg.max_body = (size_t)int_flag("max-body", optarg, 1, INT64_C(1) << 30); break;
    case O_JOB_TIMEOUT: cfg.job_timeout_ms = int_flag("job-timeout-ms", optarg, 0, INT64_C(2147483647)); break;
    case O_RETENTION: cfg.retention_s = int_flag("retention-s", optarg, 1, INT64_C(315360000)); break;
    case O_MAX_FINISHED: cfg.max_finished = (size_t)int_flag("max-finished", optarg, 1, 100000000); break;
    case O_KEEPALIVE: cfg.keepalive_timeout_s = int_flag("keepalive-timeout-s", optarg, 1, 86400); break;
    case O_MAX_CONN: cfg.max_connections = (size_t)int_flag("max-connections", optarg, 1, 10000000); break;
    case O_DRAIN: cfg.drain_timeout_s = int_flag("drain-timeout-s", optarg, 0, 86400); break;
    case O_REQ_TIMEOUT: cfg.request_timeout_ms = int_flag("request-timeout-ms", optarg, 1, 3600000); break;
    case O_NICE: cfg.worker_nice = (int)int_flag("worker-nice", optarg, 0, 19); break;
    case O_LOG:
      if (strcmp(optarg, "error") == 0)
        log_level = LOG_ERROR;
      else if (strcmp(optarg, "warn") == 0)
        log_level = LOG_WARN;
      else if (strcmp(optarg, "info") == 0)
        log_level = LOG_INFO;
      else if (strcmp(optarg, "debug") == 0)
        log_level = LOG_DEBUG;
      else {
        fprintf(stderr, "offload: --log-level must be error, warn, info or debug\n");
        return 2;
      }
      break;
    case O_INLINE: cfg.run_inline = true; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "offload: unexpected argument \"%s\"\n", argv[optind]);
    return 2;
  }
  /* A client that hangs up mid-reply must not kill the server. */
  signal(SIGPIPE, SIG_IGN);
  return server_run(&cfg);
}
