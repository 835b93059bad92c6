/* util/fault: see fault.h. */
#include "util/fault.h"

_Atomic int fault_countdown[FAULT_NPOINTS];
_Atomic unsigned fault_fired[FAULT_NPOINTS];

bool fault_hit_slow(fault_point_t p) {
  int left = atomic_fetch_sub(&fault_countdown[p], 1);
  if (left == 1) {
    atomic_fetch_add(&fault_fired[p], 1);
    return true;
  }
  if (left <= 0)
    atomic_store(&fault_countdown[p], 0); /* lost a race with another hit: stay disarmed */
  return false;
}

void fault_arm(fault_point_t p, int n) {
  atomic_store(&fault_fired[p], 0);
  atomic_store(&fault_countdown[p], n > 0 ? n : 0);
}

unsigned fault_fired_count(fault_point_t p) { return atomic_load(&fault_fired[p]); }
