/* cli/sse: an incremental parser of text/event-stream (the event streams
 * GET /events and GET /jobs/<id>/events), after the WHATWG rules: lines end
 * with CRLF, LF or CR (even split across pieces); `field: value` (one space
 * after the colon dropped); `data` lines joined with "\n"; `event` names the
 * next event ("message" when absent); `id` is kept; lines starting with ':'
 * (`: keep-alive`) and unknown fields are ignored; a blank line dispatches
 * the event, if it had data. A line or an event's data over SSE_MAX bytes is
 * an error (a server gone wrong, not one to buffer without end).
 *
 * Threads: the owner's; no global state. */
#ifndef OFFLOAD_CLI_SSE_H
#define OFFLOAD_CLI_SSE_H

#include <stddef.h>

#include "util/buf.h"

#define SSE_MAX (4u << 20)

/* One event: its name, its id ("" when none was given), its data
 * (NUL-terminated, `len` bytes). All borrowed for the call only. Returns 0
 * to go on; anything else stops sse_feed, which returns that value. */
typedef int (*sse_event_cb)(void *data, const char *event, const char *id, const char *payload, size_t len);

typedef struct sse {
  sse_event_cb cb;
  void *cb_data;
  buf_t _line, _data;
  char _event[64], _id[128];
  int _bom;     /* 0: start of stream, 1: past the BOM check */
  int _last_cr; /* the previous piece ended with CR: an LF next is part of it */
} sse_t;

void sse_init(sse_t *s, sse_event_cb cb, void *cb_data);
/* Parses n more bytes. Returns 0, the callback's non-zero value, or
 * OFF_ENOMEM / OFF_EINVAL (over SSE_MAX). */
int sse_feed(sse_t *s, const char *p, size_t n);
void sse_fini(sse_t *s);

#endif
