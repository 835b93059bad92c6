/* api/workers: GET /workers, every worker of every pool, read without
 * stopping any (the pool reads /proc for processes, the thread's CPU clock
 * for threads). */
#include "api/api_int.h"

#define WORKERS_MAX 1024

static const char *state_name(pool_worker_state_t s) {
  static const char *const names[] = {"starting", "idle", "busy", "stuck"};
  return s <= POOL_W_STUCK ? names[s] : "unknown";
}

void h_workers(api_t *a, http_req_t *req, const router_match_t *m) {
  if (!api_no_query(req))
    return;
  static pool_worker_info_t info[WORKERS_MAX]; /* loop thread only */
  json_t *arr = json_array();
  for (int l = 0; l < LANE_N; l++) {
    if (!a->pools[l])
      continue;
    size_t n = pool_worker_info(a->pools[l], info, WORKERS_MAX);
    for (size_t i = 0; i < n && i < WORKERS_MAX; i++) {
      const pool_worker_info_t *w = &info[i];
      /* Every item offload submits is an item_t; its id outlives the job's hold on it. */
      json_t *job = w->work ? json_string(item_of(w->work)->job_id) : json_null();
      json_array_append_new(
          arr, json_pack("{s:I, s:s, s:i, s:s, s:o, s:I, s:I, s:I, s:I}", "id", (json_int_t)w->id, "mode",
                         w->kind == POOL_PROCS ? "process" : "thread", "pid", w->pid, "state", state_name(w->state),
                         "jobId", job, "jobsDone", (json_int_t)w->jobs_done, "cpuMs", (json_int_t)w->cpu_ms,
                         "rssBytes", (json_int_t)w->rss_bytes, "startedAt", (json_int_t)w->started_at_ms));
    }
  }
  api_reply_json(req, 200, NULL, json_pack("{s:o}", "workers", arr));
}
