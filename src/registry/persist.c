/* registry/persist: the registry's side of the job store (store/store.h):
 * a snapshot of a job goes to the store at each state change (accepted,
 * started, final, back to queued for a retry), and jobs found in the store
 * at start come back (registry_restore). Progress is live state and is not
 * written. Loop thread only.
 *
 * Ownership: each write owns a snapshot (a persist_t) the store reads until
 * the write's callback, which frees it; the job itself may change or go in
 * the meantime. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands/run.h"
#include "registry/registry_int.h"
#include "store/files.h"
#include "util/clock.h"
#include "util/dlist.h"
#include "util/err.h"
#include "util/log.h"

typedef struct persist {
  store_write_t w; /* first: the store hands this back */
  store_job_t rec;
  registry_t *r;
  job_t *j;          /* kept from eviction until this callback (j->_writes) */
  uint32_t ver;      /* j->_ver_sent when made */
  bool accepting;    /* the insert of a job waiting for it to answer its 202 */
} persist_t;

static void persist_free(persist_t *p) {
  store_job_fini(&p->rec);
  store_rows_free(p->w.out, p->w.nout);
  free(p);
}

/* A cluster's outcomes: a progress write (best effort: only a fenced one
 * matters) and the release of a job the store now holds. */
static bool on_cluster_persisted(registry_t *r, job_t *j, bool progress, int rc) {
  if (rc == OFF_EFENCED) {
    registry_lose(r, j);
    return true;
  }
  if (progress)
    return true;
  if (rc == 0 && !j->_writes && job_is_final(j) && !j->_watches && !j->def->files && !commands_is_command(j->def))
    j->_release = true; /* written: the row answers for it now (a job with files or a log stays: they are here) */
  if (rc == 0 && j->_release && !j->_writes) {
    reg_cluster_release(r, j);
    return true;
  }
  return false;
}

static void on_persisted(store_write_t *w, int rc, void *data) {
  persist_t *p = (persist_t *)w;
  (void)data;
  registry_t *r = p->r;
  job_t *j = p->j;
  if (!j) { /* a delete: the job is long gone; the store's expiry retries a failed one */
    if (rc != 0)
      r->stats.store_failures++;
    persist_free(p);
    return;
  }
  bool accepting = p->accepting, latest = p->ver == j->_ver_sent;
  bool progress = p->w.kind == STORE_W_PROGRESS;
  if (rc != 0 && rc != OFF_EFENCED && rc != OFF_EEXIST && !progress) {
    r->stats.store_failures++;
    log_warn("store: job %s (%s) was not written: %s%s", p->rec.id, p->rec.status, err_str(rc),
             accepting || !latest || rc == OFF_ESTOPPED ? "" : "; it will be written again");
  }
  j->_writes--;
  if (accepting) {
    j->_insert_rec = NULL;
    j->_cluster_pos = (size_t)p->w.count;
    j->_existing = rc == OFF_EEXIST && p->w.nout ? &p->w.out[0] : NULL;
    reg_on_accepted(r, j, rc); /* a failed insert: the job is gone */
    persist_free(p);
    return;
  }
  persist_free(p);
  if (r->cfg.cluster && on_cluster_persisted(r, j, progress, rc))
    return;
  if (rc != 0 && rc != OFF_ESTOPPED && latest && !j->_unsaved) {
    /* The store missed the job's latest state (a later write, had there
     * been one, would carry it): write it again, as it is then. */
    j->_unsaved = true;
    j->_u_next = r->unsaved;
    r->unsaved = j;
  } else if (rc == 0 && job_is_final(j) && !j->_writes) {
    reg_evict_old(r); /* it may have held back evictions, */
    reg_cool(r);      /* or cooling */
  }
}

bool reg_durable(const registry_t *r) { return r->cfg.store && store_kind(r->cfg.store) != STORE_MEMORY; }

static char *dump(const json_t *v) { return v ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY) : NULL; }
static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int copy_files(store_job_t *rec, const job_t *j) {
  rec->files = calloc(j->nfiles, sizeof *rec->files);
  if (!rec->files)
    return OFF_ENOMEM;
  for (size_t i = 0; i < j->nfiles; i++) {
    store_file_t *f = &rec->files[rec->nfiles++];
    f->name = strdup(j->files[i].name);
    f->content_type = strdup(j->files[i].content_type);
    f->bytes = j->files[i].bytes;
    if (!f->name || !f->content_type)
      return OFF_ENOMEM;
  }
  return 0;
}

int reg_persist(registry_t *r, job_t *j, bool insert) {
  if (!reg_durable(r))
    return 0; /* nothing would ever read it back */
  if (r->cfg.cluster && !insert && j->status == JOB_PROCESSING)
    return 0; /* its claim wrote that (and the attempt) */
  if (!insert && j->_accepting) {
    /* Its insert is its only write in flight (a failed one frees the job):
     * this state is written once that is kept (reg_on_accepted). */
    j->_changed_while_accepting = true;
    return 0;
  }
  persist_t *p = calloc(1, sizeof *p);
  if (!p) {
    r->stats.store_failures++;
    return OFF_ENOMEM;
  }
  p->accepting = insert && j->_accepting;
  p->j = j;
  p->ver = ++j->_ver_sent;
  j->_writes++;
  store_job_t *rec = &p->rec;
  rec->seq = j->_seq;
  memcpy(rec->id, j->id, JOB_ID_LEN + 1);
  if (insert) { /* an update writes only what changes (store.h) */
    rec->task = strdup(j->def->name);
    rec->params = dump(j->params);
    rec->idem_key = dup_or_null(j->idem_key);
    if (j->_input_fd) { /* the store copies it to disk before the row */
      int fd = dup(j->_input_fd - 1);
      rec->input_fd = fd >= 0 ? fd + 1 : 0;
      rec->input_type = dup_or_null(j->input_type);
      rec->input_bytes = j->input_bytes;
      if (fd < 0) {
        store_job_fini(rec);
        free(p);
        j->_writes--;
        j->_ver_sent--;
        return OFF_ENOMEM;
      }
    }
  }
  rec->status = job_status_name(j->status);
  rec->token = j->_token;
  rec->progress = j->progress;
  rec->retry_at = j->retry_at;
  if (insert && r->cfg.cluster && (j->_input_fd || j->_run_params))
    rec->pin = strdup(r->cfg.node_id); /* its input, or its secret, is only here */
  rec->attempts = j->attempts;
  rec->retries = j->retries;
  rec->timeout_ms = j->_timeout_ms;
  rec->created_at = j->created_at;
  rec->started_at = j->started_at;
  rec->finished_at = j->finished_at;
  rec->result = dump(j->result);
  rec->err_code = dup_or_null(j->err_code);
  rec->err_message = dup_or_null(j->err_message);
  if (j->nfiles && copy_files(rec, j) != 0) {
    store_job_fini(rec);
    free(p);
    j->_writes--;
    j->_ver_sent--;
    r->stats.store_failures++;
    return OFF_ENOMEM;
  }
  p->r = r;
  if (p->accepting)
    j->_insert_rec = rec;
  p->w.kind = insert ? STORE_W_INSERT : STORE_W_UPDATE;
  p->w.job = rec;
  p->w.cb = on_persisted;
  store_write(r->cfg.store, &p->w);
  return 0;
}

int reg_persist_progress(registry_t *r, job_t *j) {
  persist_t *p = calloc(1, sizeof *p);
  if (!p)
    return OFF_ENOMEM;
  memcpy(p->rec.id, j->id, JOB_ID_LEN + 1);
  p->rec.status = job_status_name(j->status);
  p->rec.token = j->_token;
  p->rec.progress = j->progress;
  p->r = r;
  p->j = j;
  j->_writes++;
  p->w.kind = STORE_W_PROGRESS;
  p->w.job = &p->rec;
  p->w.cb = on_persisted;
  store_write(r->cfg.store, &p->w);
  return 0;
}

void reg_persist_delete(registry_t *r, const job_t *j) {
  if (!reg_durable(r) || r->cfg.cluster)
    return; /* (a cluster's rows expire in the store, whoever ran them) */
  persist_t *p = calloc(1, sizeof *p);
  if (!p) {
    r->stats.store_failures++; /* the store's expiry deletes the row later */
    return;
  }
  p->rec.seq = j->_seq;
  memcpy(p->rec.id, j->id, JOB_ID_LEN + 1);
  p->rec.status = job_status_name(j->status);
  p->r = r;
  p->w.kind = STORE_W_DELETE;
  p->w.job = &p->rec;
  p->w.cb = on_persisted;
  store_write(r->cfg.store, &p->w);
}

/* ---- cold jobs ---- */

/* FNV-1a over the canonical text (sorted keys, compact): equal params give
 * equal hashes, as json_equal would say. */
uint64_t registry_params_hash(const json_t *params) {
  char *text = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY);
  uint64_t h = UINT64_C(14695981039346656037);
  for (const char *c = text ? text : ""; *c; c++)
    h = (h ^ (unsigned char)*c) * UINT64_C(1099511628211);
  free(text);
  return h;
}

bool registry_same_params(const job_t *j, const json_t *params) {
  if (j->_hashed)
    return j->_params_hash == registry_params_hash(params);
  if (!tasks_has_secret(j->def))
    return json_equal(j->params, (json_t *)params);
  /* Restored from disk: only the shown (redacted) params are left to compare. */
  json_t *shown = tasks_redact(j->def, params);
  bool same = shown && json_equal(j->params, shown);
  json_decref(shown);
  return same;
}

/* Nothing still needs the job's params and result in memory: it is final
 * and its last state is committed. */
static bool coolable(const job_t *j) { return reg_evictable(j) && !j->_watches && job_is_final(j); }

static void cool(job_t *j) {
  if (j->idem_key && !j->_hashed) {
    j->_params_hash = registry_params_hash(j->params);
    j->_hashed = true;
  }
  json_decref(j->params);
  json_decref(j->result);
  free(j->err_code);
  free(j->err_message);
  free(j->json_cache);
  j->params = j->result = NULL;
  j->err_code = j->err_message = j->json_cache = NULL;
  j->json_cache_len = 0;
  j->_cold = true;
}

void reg_cool(registry_t *r) {
  if (!reg_durable(r) || !r->cfg.cache_finished)
    return;
  while (r->f_warm && r->nfinished - r->ncold > r->cfg.cache_finished && coolable(r->f_warm)) {
    cool(r->f_warm);
    r->ncold++;
    r->f_warm = r->f_warm->_f_next;
  }
}

void registry_restored(registry_t *r) { reg_cool(r); }

static job_status_t status_of(const char *name) {
  for (int s = 0; s < JOB_NSTATUS; s++)
    if (strcmp(name, job_status_name((job_status_t)s)) == 0)
      return (job_status_t)s;
  return JOB_FAILED;
}

/* Reopens a job's stored input (main thread, before serving: disk I/O is
 * allowed then). */
static bool restore_input(registry_t *r, job_t *j) {
  int fd = files_open_input(r->cfg.files_root, j->id, j->input_bytes);
  if (fd < 0)
    return false;
  j->_input_fd = fd + 1;
  return true;
}

int registry_restore(registry_t *r, const store_job_t *row) {
  const offload_task_def_t *def = tasks_catalog_find(r->cfg.catalog, row->task);
  if (!def) {
    log_warn("store: job %s is of task %s, which this server does not offer; left on disk as it is", row->id,
             row->task);
    return 0;
  }
  if (r->njobs + 1 > r->nbuckets && index_hash_grow(r) != 0)
    return OFF_ENOMEM;
  job_t *j = calloc(1, sizeof *j);
  if (!j)
    return OFF_ENOMEM;
  j->params = json_loads(row->params, 0, NULL);
  if (!j->params) {
    free(j);
    log_warn("store: job %s has unreadable params; skipped", row->id);
    return 0;
  }
  memcpy(j->id, row->id, JOB_ID_LEN + 1);
  j->def = def;
  j->status = status_of(row->status);
  j->attempts = row->attempts;
  j->retries = row->retries;
  j->created_at = row->created_at;
  j->started_at = row->started_at;
  j->finished_at = row->finished_at;
  j->_lane = def->isolation == OFFLOAD_ISOLATION_PROCESS ? LANE_PROCESS : LANE_THREAD;
  j->_timeout_ms = row->timeout_ms;
  if (row->result)
    j->result = json_loads(row->result, JSON_DECODE_ANY, NULL);
  j->err_code = dup_or_null(row->err_code);
  j->err_message = dup_or_null(row->err_message);
  j->idem_key = dup_or_null(row->idem_key);
  if (row->nfiles && (j->files = calloc(row->nfiles, sizeof *j->files)) != NULL)
    for (size_t i = 0; i < row->nfiles; i++) {
      j->files[j->nfiles].name = dup_or_null(row->files[i].name);
      j->files[j->nfiles].content_type = dup_or_null(row->files[i].content_type);
      j->files[j->nfiles++].bytes = row->files[i].bytes;
    }
  if (row->input_type) {
    j->input_type = dup_or_null(row->input_type);
    j->input_bytes = row->input_bytes;
  }
  if (job_is_final(j) && j->status == JOB_COMPLETE)
    j->progress = 1.0;
  /* index_add numbers jobs; a restored one keeps its own number. */
  r->next_seq = row->seq - 1 > r->next_seq ? row->seq - 1 : r->next_seq;
  index_add(r, j);
  if (j->idem_key)
    index_key_add(r, j);
  if (j->_seq != row->seq)
    log_warn("store: job %s is out of creation order", row->id);

  if (job_is_final(j)) {
    index_status_link(r, j);
    j->_finished_mono_ms = (uint64_t)clock_mono_ms() -
                           (uint64_t)(clock_wall_ms() > j->finished_at ? clock_wall_ms() - j->finished_at : 0);
    /* The finished list is oldest finished first (eviction takes its head);
     * rows come in creation order, so walk back from the tail. */
    job_t *after = r->f_tail;
    while (after && after->_finished_mono_ms > j->_finished_mono_ms)
      after = after->_f_prev;
    j->_f_prev = after;
    j->_f_next = after ? after->_f_next : r->f_head;
    if (j->_f_next)
      j->_f_next->_f_prev = j;
    else
      r->f_tail = j;
    if (after)
      after->_f_next = j;
    else
      r->f_head = j;
    r->f_warm = r->f_head; /* nothing is cold before registry_restored */
    r->nfinished++;
    return 0;
  }
  if (j->status == JOB_PROCESSING && j->attempts > j->retries) {
    /* It was running when the server died, and has no run left. */
    j->status = JOB_QUEUED;
    index_status_link(r, j);
    reg_set_error(j, "interrupted", "The server stopped while the job ran, and the job has no retries left.");
    reg_finalize(r, j, JOB_FAILED); /* written by reg_mark_final */
    return 0;
  }
  if (row->input_type && !restore_input(r, j)) {
    j->status = JOB_QUEUED;
    index_status_link(r, j);
    reg_set_error(j, "input_lost", "The job's stored input is missing from the data dir; submit it again.");
    reg_finalize(r, j, JOB_FAILED); /* written by reg_mark_final */
    return 0;
  }
  if (tasks_has_secret(def)) {
    /* Its secret params were never written: it cannot run again. */
    j->status = JOB_QUEUED;
    index_status_link(r, j);
    reg_set_error(j, "secret_lost",
                  "The server restarted before the job ran to its end, and its secret parameters are never stored; "
                  "submit it again.");
    reg_finalize(r, j, JOB_FAILED); /* written by reg_mark_final */
    return 0;
  }
  /* Queued, or interrupted mid-run with a run left: queued again, in its
   * place (creation order). */
  bool was_running = j->status == JOB_PROCESSING;
  j->status = JOB_QUEUED;
  j->started_at = 0;
  index_status_link(r, j);
  int rc = reg_hand_to_pool(r, j, true);
  if (rc != 0) {
    reg_set_error(j, "internal", "The job could not be queued again at start.");
    reg_finalize(r, j, JOB_FAILED); /* written by reg_mark_final */
  } else if (was_running) {
    reg_persist(r, j, false);
  }
  return 0;
}
