/* pool/item: a job's work item: params copy, ctl slot, result slot, and the
 * run that joins them to a task kind, on a thread or (through the wire
 * format) in a worker process. See pool/item.h. */
#include "pool/item.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "pool/wire.h"
#include "util/err.h"

item_t *item_new(const offload_task_def_t *def, const json_t *params, int64_t timeout_ms) {
  item_t *it = calloc(1, sizeof *it);
  if (!it)
    return NULL;
  it->params = json_deep_copy(params);
  if (!it->params) {
    free(it);
    return NULL;
  }
  it->def = def;
  it->input_fd = -1;
  it->work.timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
  it->work.run = item_run;
  it->work.ctl = &it->ctl;
  atomic_init(&it->ctl.state, POOL_WORK_IDLE);
  atomic_init(&it->ctl.started_ms, 0);
  atomic_init(&it->ctl.progress, 0.0);
  atomic_init(&it->ctl.cancel, false);
  atomic_init(&it->ctl.timed_out, false);
  atomic_init(&it->ctl.deadline_ns, 0);
  atomic_init(&it->ctl.fault, POOL_FAULT_NONE);
  atomic_init(&it->ctl.fault_signal, 0);
  atomic_init(&it->ctl.fault_status, -1);
  return it;
}

void item_free(item_t *it) {
  if (!it)
    return;
  json_decref(it->params);
  task_result_fini(&it->result);
  if (it->input_fd >= 0)
    close(it->input_fd);
  free(it);
}

void item_run(pool_work_t *w) {
  item_t *it = item_of(w);
  offload_task_t t = {
      .params = it->params,
      .progress = &it->ctl.progress,
      .cancel = &it->ctl.cancel,
      .timed_out = &it->ctl.timed_out,
      .deadline_ns = atomic_load_explicit(&it->ctl.deadline_ns, memory_order_relaxed),
      .result = &it->result,
      .files_root = it->files_root,
      .job_id = it->job_id[0] ? it->job_id : NULL,
      .parallel = pool_parallel,
  };
  task_files_clear(&t); /* what an earlier run of the job left */
  if (it->input_fd >= 0 && task_input_map(&t, it->input_fd, (size_t)it->input_len, it->input_type) != 0) {
    offload_task_fail(&t, "internal", "The job's input could not be mapped: %s.", strerror(errno));
    return;
  }
  task_run(&t, it->def);
  task_input_unmap(&t);
}

int item_encode(pool_work_t *w, void **payload, size_t *len, int *fd) {
  item_t *it = item_of(w);
  wire_where_t where;
  memset(&where, 0, sizeof where);
  if (it->files_root && strlen(it->files_root) < sizeof where.files_root) {
    memcpy(where.job_id, it->job_id, sizeof where.job_id);
    snprintf(where.files_root, sizeof where.files_root, "%s", it->files_root);
  }
  where.input_fd = -1;
  if (it->input_fd >= 0) {
    /* The input goes with the frame (the pool closes what it is given). */
    where.has_input = true;
    where.input_len = it->input_len;
    snprintf(where.input_type, sizeof where.input_type, "%s", it->input_type);
    if ((where.input_fd = dup(it->input_fd)) < 0)
      return OFF_ESYS;
  }
  int rc = wire_encode_job(it->def->name, &where, it->params, WIRE_INLINE_MAX, payload, len, fd);
  if (rc != 0 && where.input_fd >= 0)
    close(where.input_fd);
  return rc;
}

int item_decode(pool_work_t *w, const void *payload, size_t len, int fd) {
  (void)fd;
  item_t *it = item_of(w);
  task_result_fini(&it->result);
  return wire_decode_result(payload, len, &it->result);
}

item_outcome_t item_outcome(const item_t *it) {
  if (atomic_load(&it->ctl.cancel))
    return ITEM_OUT_CANCELED;
  if (atomic_load(&it->ctl.timed_out))
    return ITEM_OUT_TIMEOUT;
  switch ((pool_fault_t)atomic_load(&it->ctl.fault)) {
  case POOL_FAULT_OOM: return ITEM_OUT_OOM;
  case POOL_FAULT_CRASH:
  case POOL_FAULT_KILLED: return ITEM_OUT_CRASHED;
  case POOL_FAULT_NONE: break;
  }
  if (it->result.failed)
    return ITEM_OUT_FAILED;
  return ITEM_OUT_COMPLETE;
}

json_t *item_result_json(const item_t *it) { return task_result_json(&it->result); }

static const char *signal_name(int sig) {
  switch (sig) {
  case SIGSEGV: return "SIGSEGV";
  case SIGABRT: return "SIGABRT";
  case SIGBUS: return "SIGBUS";
  case SIGFPE: return "SIGFPE";
  case SIGILL: return "SIGILL";
  case SIGKILL: return "SIGKILL";
  case SIGTERM: return "SIGTERM";
  case SIGINT: return "SIGINT";
  case SIGXCPU: return "SIGXCPU";
  case SIGXFSZ: return "SIGXFSZ";
  case SIGPIPE: return "SIGPIPE";
  case SIGSYS: return "SIGSYS";
  case SIGTRAP: return "SIGTRAP";
  default: return NULL;
  }
}

void item_fault_message(const item_t *it, uint64_t memory_mb, char *buf, size_t size) {
  int sig = atomic_load(&it->ctl.fault_signal);
  int status = atomic_load(&it->ctl.fault_status);
  const char *name = signal_name(sig);
  if (atomic_load(&it->ctl.fault) == POOL_FAULT_OOM) {
    snprintf(buf, size, "The worker ran out of memory (limit %llu MiB) and exited on signal %d (%s).",
             (unsigned long long)memory_mb, sig, name ? name : "unknown");
  } else if (sig == SIGXCPU) {
    snprintf(buf, size, "The worker exited on signal %d (SIGXCPU): the job used up its CPU time limit.", sig);
  } else if (sig) {
    snprintf(buf, size, "The worker exited on signal %d (%s).", sig, name ? name : "unknown");
  } else if (status >= 0) {
    snprintf(buf, size, "The worker exited with status %d in the middle of the job.", status);
  } else {
    snprintf(buf, size, "The worker could not run the job and was replaced.");
  }
}
