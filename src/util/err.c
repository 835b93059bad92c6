/* util/err: err_str, the one sentence per OFF_E* code (offload/err.h). */
#include "util/err.h"

const char *err_str(int code) {
  switch (code) {
  case OFF_OK: return "success";
  case OFF_ENOMEM: return "out of memory";
  case OFF_EFULL: return "queue is full";
  case OFF_EBUSY: return "item is already running or finished";
  case OFF_ENOENT: return "no such item";
  case OFF_EINVAL: return "invalid argument";
  case OFF_ESTOPPED: return "shutting down";
  case OFF_ESYS: return "system call failed";
  case OFF_ESTORE: return "the job store cannot write";
  case OFF_EFENCED: return "the job was given to another node (this node's lease lapsed)";
  case OFF_EEXIST: return "already exists";
  }
  return "unknown error";
}
