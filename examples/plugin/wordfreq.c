/* wordfreq: an example offload plug-in (docs/PLUGINS.md).
 *
 *   POST /jobs/wordfreq?top=5   with a text/plain body
 *   → {"words": 12, "top": [{"word": "the", "count": 3}, ...]}
 *
 * Words are runs of ASCII letters, lowercased; every other byte (digits,
 * punctuation, spaces, any non-ASCII byte) separates them. "words" counts
 * them all; "top" lists the `top` most frequent (default 10, at most 100),
 * most frequent first, ties in alphabetical order.
 *
 * Built against include/offload/task.h alone:
 *   cc -std=c17 -O2 -Wall -Wextra -shared -fPIC -I../../include -o wordfreq.so wordfreq.c
 * It runs on a worker thread like a built-in task: it keeps no global
 * state, reads its input in place (never copies it), checks for cancel
 * every 1 MiB, and frees all it allocates before it returns. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offload/task.h"

/* One distinct word: where it first occurs in the input, lowercased on
 * the fly when compared or printed. */
typedef struct word {
  const unsigned char *at; /* NULL: an empty slot */
  size_t len;
  uint64_t count;
  uint64_t hash;
} word_t;

typedef struct table {
  word_t *slots;
  size_t cap; /* a power of two */
  size_t used;
} table_t;

static int is_letter(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c; }

/* FNV-1a over the lowercased letters. */
static uint64_t hash_word(const unsigned char *w, size_t len) {
  uint64_t h = UINT64_C(14695981039346656037);
  for (size_t i = 0; i < len; i++)
    h = (h ^ lower(w[i])) * UINT64_C(1099511628211);
  return h;
}

/* <0, 0, >0 as a sorts before, with, after b (lowercased bytes). */
static int word_cmp(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen) {
  size_t n = alen < blen ? alen : blen;
  for (size_t i = 0; i < n; i++)
    if (lower(a[i]) != lower(b[i]))
      return lower(a[i]) < lower(b[i]) ? -1 : 1;
  return alen < blen ? -1 : alen > blen;
}

static int grow(table_t *t) {
  size_t ncap = t->cap ? t->cap * 2 : 1024;
  word_t *ns = calloc(ncap, sizeof *ns);
  if (!ns)
    return -1;
  for (size_t i = 0; i < t->cap; i++) {
    if (!t->slots[i].at)
      continue;
    size_t k = t->slots[i].hash & (ncap - 1);
    while (ns[k].at)
      k = (k + 1) & (ncap - 1);
    ns[k] = t->slots[i];
  }
  free(t->slots);
  t->slots = ns;
  t->cap = ncap;
  return 0;
}

static int count_word(table_t *t, const unsigned char *w, size_t len) {
  if ((t->used + 1) * 2 > t->cap && grow(t) != 0) /* at most half full */
    return -1;
  uint64_t h = hash_word(w, len);
  size_t k = h & (t->cap - 1);
  while (t->slots[k].at) {
    word_t *s = &t->slots[k];
    if (s->hash == h && word_cmp(s->at, s->len, w, len) == 0) {
      s->count++;
      return 0;
    }
    k = (k + 1) & (t->cap - 1);
  }
  t->slots[k] = (word_t){.at = w, .len = len, .count = 1, .hash = h};
  t->used++;
  return 0;
}

/* Most frequent first; ties alphabetically. */
static int by_rank(const void *pa, const void *pb) {
  const word_t *a = pa, *b = pb;
  if (a->count != b->count)
    return a->count > b->count ? -1 : 1;
  return word_cmp(a->at, a->len, b->at, b->len);
}

/* The result as JSON text: words are lowercase ASCII letters, so they need
 * no escaping. NULL when out of memory. */
static char *result_text(uint64_t words, const word_t *top, size_t ntop) {
  size_t cap = 64;
  for (size_t i = 0; i < ntop; i++)
    cap += top[i].len + 48;
  char *out = malloc(cap);
  if (!out)
    return NULL;
  size_t o = (size_t)snprintf(out, cap, "{\"words\":%llu,\"top\":[", (unsigned long long)words);
  for (size_t i = 0; i < ntop; i++) {
    o += (size_t)snprintf(out + o, cap - o, "%s{\"word\":\"", i ? "," : "");
    for (size_t k = 0; k < top[i].len; k++)
      out[o++] = (char)lower(top[i].at[k]);
    o += (size_t)snprintf(out + o, cap - o, "\",\"count\":%llu}", (unsigned long long)top[i].count);
  }
  snprintf(out + o, cap - o, "]}");
  return out;
}

static void wordfreq_run(offload_task_t *t) {
  size_t len = 0;
  const unsigned char *text = offload_task_input(t, &len, NULL);
  size_t want = (size_t)offload_task_param_int(t, "top", 10);
  table_t tab = {0};
  uint64_t words = 0;
  size_t i = 0, next_check = 0;
  while (i < len) {
    if (i >= next_check) { /* every 1 MiB: a few ms of work */
      if (offload_task_canceled(t))
        goto out;
      offload_task_progress(t, (double)i / (double)len);
      next_check = i + (1u << 20);
    }
    if (!is_letter(text[i])) {
      i++;
      continue;
    }
    size_t start = i;
    while (i < len && is_letter(text[i]))
      i++;
    if (count_word(&tab, text + start, i - start) != 0) {
      offload_task_fail(t, "out_of_memory", "No memory for %zu distinct words.", tab.used);
      goto out;
    }
    words++;
  }
  /* Pack the distinct words to the front and rank them. */
  size_t n = 0;
  for (size_t k = 0; k < tab.cap; k++)
    if (tab.slots[k].at)
      tab.slots[n++] = tab.slots[k];
  if (n)
    qsort(tab.slots, n, sizeof *tab.slots, by_rank);
  char *json = result_text(words, tab.slots, n < want ? n : want);
  if (!json) {
    offload_task_fail(t, "out_of_memory", "No memory for the result.");
    goto out;
  }
  offload_task_result_json(t, json);
  free(json);
out:
  free(tab.slots);
}

static const char *const wordfreq_types[] = {"text/plain", NULL};

static const offload_param_spec_t wordfreq_params[] = {
    {.name = "top",
     .type = OFFLOAD_PARAM_INTEGER,
     .min = 1,
     .max = 100,
     .dflt = "10",
     .description = "how many of the most frequent words to list"},
};

static const offload_task_def_t wordfreq_tasks[] = {
    {
        .name = "wordfreq",
        .description = "Counts the words of a text and lists the most frequent ones.",
        .run = wordfreq_run,
        .params = wordfreq_params,
        .nparams = sizeof wordfreq_params / sizeof wordfreq_params[0],
        .input = OFFLOAD_INPUT_REQUIRED,
        .input_types = wordfreq_types,
    },
};

OFFLOAD_PLUGIN(wordfreq_tasks);
