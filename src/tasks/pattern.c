/* tasks/pattern: the `pattern` of a string parameter (offload/task.h), a
 * POSIX extended regex the whole value must match. See tasks.h.
 *
 * DESIGN. A full match is checked without rewriting the pattern: POSIX
 * regexec finds the leftmost match and, from there, the longest one, so a
 * value matches the whole pattern exactly when that match runs from byte 0
 * to the end. Wrapping the text as ^(...)$ would need the parentheses of
 * the pattern to pair up as written ("a)|(b" does not), which the regex
 * itself does not promise. Back-references (\1) are refused: they are a
 * GNU extension to ERE and make matching exponential.
 *
 * Patterns come from the server's configuration (specs), never from
 * requests, so each is compiled once, on its first use, and kept in a small
 * table keyed by its text (specs are copied by value into catalogs, so the
 * text is the stable key, not the spec's address). The table is the one
 * piece of process-wide state here, a cache of pure results like the
 * libraries' own (fontconfig's): entries are added under a mutex, never
 * changed or removed before tasks_patterns_fini(), so a match runs outside
 * the lock (regexec is thread-safe on a shared regex_t). A pattern past
 * the table's capacity is compiled for each match instead. */
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/tasks.h"
#include "util/err.h"
#include "util/fault.h"

#define PATTERNS_MAX 256

typedef struct pattern {
  char *text;
  regex_t re;
} pattern_t;

static pthread_mutex_t patterns_lock = PTHREAD_MUTEX_INITIALIZER;
static pattern_t patterns[PATTERNS_MAX];
static size_t npatterns; /* under patterns_lock */

/* Compiles `text` into *re: 0, OFF_EINVAL (err says why) or OFF_ENOMEM. */
static int compile(const char *text, regex_t *re, char *err, size_t errlen) {
  for (const char *p = text; *p; p++) {
    if (*p != '\\')
      continue;
    if (p[1] >= '1' && p[1] <= '9') {
      snprintf(err, errlen, "back-references such as \\%c are not allowed (they make matching exponential)", p[1]);
      return OFF_EINVAL;
    }
    if (p[1])
      p++;
  }
  int rc = regcomp(re, text, REG_EXTENDED);
  if (rc == REG_ESPACE)
    return OFF_ENOMEM;
  if (rc != 0) {
    regerror(rc, re, err, errlen);
    return OFF_EINVAL;
  }
  return 0;
}

int tasks_pattern_check(const char *pattern, char *err, size_t errlen) {
  char why[128];
  regex_t re;
  int rc = compile(pattern, &re, why, sizeof why);
  if (rc == 0)
    regfree(&re);
  else if (rc == OFF_EINVAL)
    snprintf(err, errlen, "%s", why);
  else
    snprintf(err, errlen, "out of memory");
  return rc;
}

/* The cached compiled form of `pattern`, compiled now if new; NULL when the
 * table is full (or the pattern cannot be compiled or stored: *rc says). */
static const regex_t *cached(const char *pattern, int *rc) {
  const regex_t *found = NULL;
  *rc = 0;
  pthread_mutex_lock(&patterns_lock);
  for (size_t i = 0; i < npatterns && !found; i++)
    if (strcmp(patterns[i].text, pattern) == 0)
      found = &patterns[i].re;
  if (!found && npatterns < PATTERNS_MAX) {
    pattern_t *p = &patterns[npatterns];
    char why[128];
    p->text = FAULT_HIT(FAULT_ALLOC) ? NULL : strdup(pattern);
    *rc = p->text ? compile(pattern, &p->re, why, sizeof why) : OFF_ENOMEM;
    if (*rc == 0) {
      found = &p->re;
      npatterns++;
    } else {
      free(p->text);
      p->text = NULL;
    }
  }
  pthread_mutex_unlock(&patterns_lock);
  return found;
}

int tasks_pattern_match(const char *pattern, const char *s, size_t len) {
  if (memchr(s, '\0', len))
    return 0; /* regexec would stop at the NUL and judge only the text before it */
  int rc;
  regex_t local;
  const regex_t *re = cached(pattern, &rc);
  if (!re) {
    char why[128];
    if (rc != 0 || (rc = compile(pattern, &local, why, sizeof why)) != 0)
      return rc;
    re = &local;
  }
  regmatch_t m;
  bool whole = regexec(re, s, 1, &m, 0) == 0 && m.rm_so == 0 && (size_t)m.rm_eo == len;
  if (re == &local)
    regfree(&local);
  return whole ? 1 : 0;
}

void tasks_patterns_fini(void) {
  pthread_mutex_lock(&patterns_lock);
  for (size_t i = 0; i < npatterns; i++) {
    regfree(&patterns[i].re);
    free(patterns[i].text);
    patterns[i].text = NULL;
  }
  npatterns = 0;
  pthread_mutex_unlock(&patterns_lock);
}
