/* offload/err.h: the error codes every offload call returns, public so that
 * an embedder of offload/pool.h can name the codes it promises (OFF_EFULL,
 * OFF_ESTOPPED, OFF_EBUSY).
 *
 * Functions return 0 on success or a negative OFF_E* code. err_str() gives the
 * one human sentence for each code. Any thread may call these; no state. */
#ifndef OFFLOAD_ERR_H
#define OFFLOAD_ERR_H

enum {
  OFF_OK = 0,
  OFF_ENOMEM = -1,   /* allocation failed */
  OFF_EFULL = -2,    /* bounded queue is full */
  OFF_EBUSY = -3,    /* item is running or finished; cannot be taken back */
  OFF_ENOENT = -4,   /* no such item */
  OFF_EINVAL = -5,   /* bad argument */
  OFF_ESTOPPED = -6, /* the component is shutting down */
  OFF_ESYS = -7,     /* a system call failed; see errno / log */
  OFF_ESTORE = -8,   /* the job store cannot write (disk full, I/O error) */
  OFF_EFENCED = -9,  /* a cluster write lost its lease: another node holds the job now */
  OFF_EEXIST = -10,  /* it exists already (an idempotency key another job holds) */
};

/* Returns a static string; never NULL. */
const char *err_str(int code);

#endif
