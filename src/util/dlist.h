/* util/dlist: unlink and append for intrusive doubly linked lists whose
 * nodes carry their own prev/next fields (named by the caller, so one node
 * can sit in several lists). No allocation, no locking: the list's owner
 * decides the thread. */
#ifndef OFFLOAD_UTIL_DLIST_H
#define OFFLOAD_UTIL_DLIST_H

#define DLIST_UNLINK(head, tail, node, prev, next)                                                                     \
  do {                                                                                                                 \
    if ((node)->prev)                                                                                                  \
      (node)->prev->next = (node)->next;                                                                               \
    else                                                                                                               \
      (head) = (node)->next;                                                                                           \
    if ((node)->next)                                                                                                  \
      (node)->next->prev = (node)->prev;                                                                               \
    else                                                                                                               \
      (tail) = (node)->prev;                                                                                           \
    (node)->prev = (node)->next = NULL;                                                                                \
  } while (0)

#define DLIST_APPEND(head, tail, node, prev, next)                                                                     \
  do {                                                                                                                 \
    (node)->next = NULL;                                                                                               \
    (node)->prev = (tail);                                                                                             \
    if (tail)                                                                                                          \
      (tail)->next = (node);                                                                                           \
    else                                                                                                               \
      (head) = (node);                                                                                                 \
    (tail) = (node);                                                                                                   \
  } while (0)

#endif
