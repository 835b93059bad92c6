/* pool/item: a job's work item: params copy, ctl slot, result slot, and the
 * run that joins them to a task kind. See pool/item.h. */
#include "pool/item.h"

#include <stdlib.h>

#include "util/clock.h"

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
  it->timeout_ms = timeout_ms;
  it->work.run = item_run;
  it->work.ctl = &it->ctl;
  atomic_init(&it->ctl.state, POOL_WORK_IDLE);
  atomic_init(&it->ctl.started_ms, 0);
  atomic_init(&it->ctl.progress, 0.0);
  atomic_init(&it->ctl.cancel, false);
  atomic_init(&it->ctl.timed_out, false);
  atomic_init(&it->ctl.deadline_ns, 0);
  return it;
}

void item_free(item_t *it) {
  if (!it)
    return;
  json_decref(it->params);
  task_result_fini(&it->result);
  free(it);
}

void item_run(pool_work_t *w) {
  item_t *it = item_of(w);
  uint64_t deadline = it->timeout_ms > 0 ? clock_mono_ns() + (uint64_t)it->timeout_ms * 1000000u : 0;
  atomic_store_explicit(&it->ctl.deadline_ns, deadline, memory_order_relaxed);
  offload_task_t t = {
      .params = it->params,
      .progress = &it->ctl.progress,
      .cancel = &it->ctl.cancel,
      .timed_out = &it->ctl.timed_out,
      .deadline_ns = deadline,
      .result = &it->result,
  };
  task_run(&t, it->def);
}

item_outcome_t item_outcome(const item_t *it) {
  if (atomic_load(&it->ctl.cancel))
    return ITEM_OUT_CANCELED;
  if (atomic_load(&it->ctl.timed_out))
    return ITEM_OUT_TIMEOUT;
  if (it->result.failed)
    return ITEM_OUT_FAILED;
  return ITEM_OUT_COMPLETE;
}

json_t *item_result_json(const item_t *it) { return task_result_json(&it->result); }
