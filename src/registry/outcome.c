/* registry/outcome: what a worker left and what the job does about it:
 * the outcome of a finished run, a run whose deadline passed or whose
 * thread would not stop (stall), and retries with backoff. See
 * registry.h. Loop thread only. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "commands/run.h"
#include "pool/item.h"
#include "registry/registry_int.h"
#include "util/clock.h"
#include "util/dlist.h"
#include "util/log.h"

/* Counts the run of the job's current item once it has started. */
static void count_run(registry_t *r, job_t *j) {
  if (j->_run_counted)
    return;
  j->_run_counted = true;
  j->attempts++;
  r->stats.attempts++;
  /* A cluster's claim wrote the row's start: the run shows that one. */
  j->started_at = j->_claimed_at ? j->_claimed_at : pool_work_started_ms(&j->_item->work);
  if (j->status == JOB_PROCESSING)
    reg_persist(r, j, false);
}

/* The job lets go of its item while a worker still holds it; the item is
 * freed when the pool hands it back (registry_on_done). */
static void orphan_item(registry_t *r, job_t *j) {
  index_queue_unlink(r, j); /* it may not have been pruned yet */
  j->_item->owner = NULL;
  j->_item = NULL;
  r->in_flight--;
  r->orphans++;
}

/* ---- retries ---- */

/* The failures a retry may cure: the worker died, memory ran out (the
 * worker's cap, or a task that reports out_of_memory itself), or time ran
 * out. A task's other errors would only repeat. */
static bool retryable(const item_t *it, item_outcome_t out) {
  if (out == ITEM_OUT_FAILED)
    return strcmp(it->result.err_code, "out_of_memory") == 0;
  return out == ITEM_OUT_CRASHED || out == ITEM_OUT_OOM || out == ITEM_OUT_TIMEOUT;
}

static bool may_retry(const registry_t *r, const job_t *j) {
  return j->attempts <= j->retries && !r->draining && !j->cancel_requested;
}

static void on_retry_timer(uv_timer_t *t) {
  retry_t *rt = (retry_t *)t;
  registry_t *r = rt->r;
  job_t *j = rt->j;
  DLIST_UNLINK(r->b_head, r->b_tail, j, _b_prev, _b_next);
  j->retry_at = 0;
  if (reg_hand_to_pool(r, j, true) != 0) {
    reg_set_error(j, "internal", "The job could not be queued again (out of memory).");
    reg_finalize(r, j, JOB_FAILED);
    reg_maybe_idle(r);
  }
}

/* Puts a job whose run failed (and whose item it let go of) back in the
 * queue after its backoff: base x 2^(n-1) for the n-th retry, plus up to
 * 10 % jitter (only ever added). */
static uint64_t backoff_ms(const registry_t *r, const job_t *j);

static void schedule_retry(registry_t *r, job_t *j) {
  if (r->cfg.cluster) { /* back to the shared queue, due after the backoff */
    uint64_t delay = backoff_ms(r, j);
    r->stats.retries++;
    log_info("job %s: attempt %d failed; queued again, due in %llu ms", j->id, j->attempts, (unsigned long long)delay);
    reg_cluster_requeue(r, j, (int64_t)delay);
    return;
  }
  if (!j->_retry) {
    retry_t *rt = calloc(1, sizeof *rt);
    if (!rt) {
      reg_set_error(j, "internal", "The job could not be scheduled again (out of memory).");
      reg_finalize(r, j, JOB_FAILED);
      return;
    }
    rt->r = r;
    rt->j = j;
    uv_timer_init(r->loop, &rt->t);
    j->_retry = &rt->t;
  }
  uint64_t delay = backoff_ms(r, j);
  free(j->err_code);
  free(j->err_message);
  j->err_code = j->err_message = NULL;
  j->started_at = 0;
  index_queue_unlink(r, j); /* it may not have been pruned yet */
  reg_set_status(r, j, JOB_QUEUED);
  j->retry_at = clock_wall_ms() + (int64_t)delay;
  DLIST_APPEND(r->b_head, r->b_tail, j, _b_prev, _b_next);
  r->stats.retries++;
  reg_persist(r, j, false);
  uv_timer_start(j->_retry, on_retry_timer, delay, 0);
  log_info("job %s: attempt %d failed; retrying in %llu ms", j->id, j->attempts, (unsigned long long)delay);
  reg_tell(r, j, REG_EV_RETRY);
}

/* base x 2^(n-1) for the n-th retry, plus up to 10 % jitter. */
static uint64_t backoff_ms(const registry_t *r, const job_t *j) {
  int n = j->attempts; /* this is retry number n */
  uint64_t base = (uint64_t)r->cfg.retry_backoff_ms;
  uint64_t delay = base << (n - 1 < 20 ? n - 1 : 20);
  uint32_t rnd = 0;
  if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
    rnd = (uint32_t)clock_mono_ns();
  return delay + delay * (rnd % 1001) / 10000; /* 0 .. +10 % */
}

/* ---- outcomes ---- */

/* After retries, the last run's message says which run it was. */
static void attempt_note(const job_t *j, char *msg, size_t size) {
  if (j->attempts <= 1)
    return;
  size_t len = strlen(msg);
  if (len > 0 && msg[len - 1] == '.')
    len--;
  snprintf(msg + len, size - len, " (attempt %d of %d).", j->attempts, j->retries + 1);
}

/* The error of a run that failed for its worker or its deadline. */
static void fault_error(const registry_t *r, const job_t *j, const item_t *it, item_outcome_t out, const char **code,
                        char *msg, size_t size) {
  if (out == ITEM_OUT_TIMEOUT) {
    *code = "timeout";
    snprintf(msg, size, "The job ran longer than its timeout of %lld ms.", (long long)j->_timeout_ms);
  } else {
    *code = out == ITEM_OUT_OOM ? "out_of_memory" : "worker_crashed";
    item_fault_message(it, r->cfg.memory_mb, msg, size);
  }
  attempt_note(j, msg, size);
}

/* Records what the worker left in `it` (its run is over: state DONE).
 * Returns true, changing nothing else, when the job should run again (the
 * caller schedules that once it has freed the item). */
static bool record_outcome(registry_t *r, job_t *j, item_t *it) {
  count_run(r, j);
  double p = item_progress(it);
  if (p > j->progress)
    j->progress = p;
  item_outcome_t out = item_outcome(it);
  if (retryable(it, out) && may_retry(r, j))
    return true;
  switch (out) {
  case ITEM_OUT_COMPLETE:
    j->result = item_result_json(it);
    if (reg_files_take(j, it) != 0) {
      reg_set_error(j, "internal", "The job's output files could not be recorded (out of memory).");
      reg_mark_final(r, j, JOB_FAILED);
      break;
    }
    reg_mark_final(r, j, JOB_COMPLETE);
    break;
  case ITEM_OUT_FAILED: {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", it->result.err_message ? it->result.err_message : "The task failed.");
    if (retryable(it, out))
      attempt_note(j, msg, sizeof msg);
    reg_set_error(j, it->result.err_code, msg);
    reg_mark_final(r, j, JOB_FAILED);
    break;
  }
  case ITEM_OUT_TIMEOUT:
  case ITEM_OUT_CRASHED:
  case ITEM_OUT_OOM: {
    const char *code;
    char msg[256];
    fault_error(r, j, it, out, &code, msg, sizeof msg);
    reg_set_error(j, code, msg);
    reg_mark_final(r, j, JOB_FAILED);
    break;
  }
  case ITEM_OUT_CANCELED:
    reg_set_error(j, "canceled", reg_cancel_message(j, true));
    reg_mark_final(r, j, JOB_CANCELED);
    break;
  }
  return false;
}

void registry_refresh(registry_t *r, job_t *j) {
  if (!j->_item || job_is_final(j))
    return;
  pool_work_state_t state = pool_work_state(&j->_item->work);
  if (state == POOL_WORK_DONE) {
    /* The worker is finished (and may have moved on to the next job): show
     * the outcome now rather than when the loop gets to the done list, so no
     * reader sees more jobs processing than there are workers. The worker's
     * seq_cst store of DONE, which this load saw, came after its result
     * writes, so reading them here is ordered. A run to be retried waits for
     * the done callback (a retry moves the job between lists). */
    item_outcome_t out = item_outcome(j->_item);
    if (!(retryable(j->_item, out) && may_retry(r, j)))
      record_outcome(r, j, j->_item);
    return;
  }
  bool started = j->status == JOB_QUEUED && state == POOL_WORK_RUNNING;
  if (started) {
    reg_set_status(r, j, JOB_PROCESSING);
    count_run(r, j);
  }
  double p = item_progress(j->_item);
  if (p > j->progress)
    j->progress = p;
  if (started)
    reg_tell(r, j, REG_EV_STARTED);
}

void registry_on_done(pool_work_t *w, void *data) {
  registry_t *r = data;
  item_t *it = item_of(w);
  job_t *j = it->owner;
  if (!j) { /* an orphan: its job finished without it (what it wrote goes) */
    r->orphans--;
    if (it->files_root && pool_work_state(w) != POOL_WORK_QUEUED)
      reg_remove_outputs(r, it->job_id); /* the job's removal takes the rest */
    item_free(it);
    if (r->cfg.slot_free)
      r->cfg.slot_free(r->cfg.slot_data);
    return;
  }
  assert(j->_item == it);
  r->in_flight--;
  bool retry = false;
  if (pool_work_state(w) == POOL_WORK_QUEUED) {
    /* The pool shut down before it ran. */
    j->canceled_by_shutdown = true;
    reg_set_error(j, "canceled", msg_shutdown_queued);
    reg_mark_final(r, j, JOB_CANCELED);
  } else if (!job_is_final(j)) {
    retry = record_outcome(r, j, it);
  }
  j->_item = NULL;
  if (it->files_root && !retry && j->status != JOB_COMPLETE && pool_work_state(w) != POOL_WORK_QUEUED)
    reg_remove_outputs(r, it->job_id); /* a run that did not complete keeps no files (a command keeps its log) */
  item_free(it);
  if (retry)
    schedule_retry(r, j);
  if (job_is_final(j))
    reg_notify_final(r, j);
  reg_maybe_idle(r);
  if (r->cfg.slot_free)
    r->cfg.slot_free(r->cfg.slot_data);
}

void registry_on_started(pool_work_t *w, void *data) {
  registry_t *r = data;
  job_t *j = item_of(w)->owner;
  /* Now, not when someone asks: a durable store writes `processing` (and
   * the attempt) while the job runs, so a crash finds it interrupted. */
  if (j && j->_item == item_of(w) && pool_work_state(w) == POOL_WORK_RUNNING)
    registry_refresh(r, j);
}

void registry_on_stall(pool_work_t *w, pool_stall_t why, void *data) {
  registry_t *r = data;
  item_t *it = item_of(w);
  job_t *j = it->owner;
  if (!j || job_is_final(j))
    return;
  /* A command job's runner stops its program itself (SIGTERM to the
   * group, SIGKILL within the grace) and then returns: the job ends then,
   * timed out or canceled, with no process of it left and its working
   * directory gone, and a retry never runs beside the old attempt. */
  if (commands_is_command(j->def))
    return;
  registry_refresh(r, j);
  if (job_is_final(j) || j->_item != it)
    return;
  count_run(r, j);
  double p = item_progress(it);
  if (p > j->progress)
    j->progress = p;
  if (why == POOL_STALL_CANCEL || j->cancel_requested) {
    /* A thread that will not stop: the job is canceled now; the thread is
     * reported stuck until its task returns. */
    orphan_item(r, j);
    reg_set_error(j, "canceled", reg_cancel_message(j, true));
    reg_finalize(r, j, JOB_CANCELED);
  } else {
    /* Its deadline passed: the job fails (or is retried) now, whether or
     * not the task notices; its worker is stopped after the grace period. */
    const char *code;
    char msg[256];
    fault_error(r, j, it, ITEM_OUT_TIMEOUT, &code, msg, sizeof msg);
    orphan_item(r, j);
    if (may_retry(r, j)) {
      schedule_retry(r, j);
    } else {
      reg_set_error(j, code, msg);
      reg_finalize(r, j, JOB_FAILED);
    }
  }
  reg_maybe_idle(r);
}

