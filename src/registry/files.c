/* registry/files: the output files of a job (see registry.h, job_t.files):
 * taken from a complete run's result, and removed, off the loop, for a run
 * that did not complete and, with the memory store, when the job is
 * evicted (the SQLite store removes them with the job's row). Loop thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry/registry_int.h"
#include "store/files.h"
#include "util/err.h"
#include "util/log.h"

void reg_files_free(job_t *j) {
  for (size_t i = 0; i < j->nfiles; i++) {
    free(j->files[i].name);
    free(j->files[i].content_type);
  }
  free(j->files);
  j->files = NULL;
  j->nfiles = 0;
}

int reg_files_take(job_t *j, const item_t *it) {
  const task_result_t *res = &it->result;
  reg_files_free(j);
  if (!res->nfiles)
    return 0;
  j->files = calloc(res->nfiles, sizeof *j->files);
  if (!j->files)
    return OFF_ENOMEM;
  for (size_t i = 0; i < res->nfiles; i++) {
    store_file_t *f = &j->files[j->nfiles++];
    f->name = strdup(res->files[i].name);
    f->content_type = strdup(res->files[i].content_type);
    f->bytes = res->files[i].bytes;
    if (!f->name || !f->content_type) {
      reg_files_free(j);
      return OFF_ENOMEM;
    }
  }
  return 0;
}

void reg_input_close(job_t *j) {
  if (j->_input_fd)
    close(j->_input_fd - 1);
  j->_input_fd = 0;
}

typedef struct removal {
  uv_work_t req;
  const char *root; /* the registry's config: outlives the loop's work */
  char id[24];
  enum { RM_ALL, RM_INPUT, RM_OUTPUTS } what;
} removal_t;

static void do_remove(uv_work_t *req) {
  removal_t *rm = req->data;
  if (rm->what == RM_OUTPUTS) { /* a run that did not complete: its dotfiles (the log) stay */
    files_remove_outputs(rm->root, rm->id);
    return;
  }
  if (rm->what == RM_INPUT) {
    char path[4096];
    if (files_path(rm->root, rm->id, NULL, path, sizeof path) == 0 &&
        strlen(path) + sizeof "/" FILES_INPUT_NAME < sizeof path) {
      strcat(path, "/" FILES_INPUT_NAME);
      unlink(path);
      char dir[4096];
      files_path(rm->root, rm->id, NULL, dir, sizeof dir);
      rmdir(dir); /* only if no output is there */
    }
    return;
  }
  if (files_remove_job(rm->root, rm->id) != 0)
    log_warn("files: could not remove %s/%s", rm->root, rm->id);
}

static void after_remove(uv_work_t *req, int status) {
  (void)status;
  free(req->data);
}

static void queue_removal(registry_t *r, const char *id, int what);

void reg_remove_files(registry_t *r, const char *id) { queue_removal(r, id, RM_ALL); }
void reg_remove_input(registry_t *r, const char *id) { queue_removal(r, id, RM_INPUT); }
void reg_remove_outputs(registry_t *r, const char *id) { queue_removal(r, id, RM_OUTPUTS); }

static void queue_removal(registry_t *r, const char *id, int what) {
  if (!r->cfg.files_root)
    return;
  removal_t *rm = calloc(1, sizeof *rm);
  if (!rm)
    return; /* left on disk: a memory store's root goes at exit anyway */
  rm->root = r->cfg.files_root;
  rm->what = what;
  snprintf(rm->id, sizeof rm->id, "%s", id);
  rm->req.data = rm;
  if (uv_queue_work(r->loop, &rm->req, do_remove, after_remove) != 0)
    free(rm);
}
