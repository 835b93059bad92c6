/* util/err: error codes shared by every layer. The codes and err_str() are
 * published in offload/err.h (the public headers return them); this header
 * is the name the layers inside src/ include, so it only forwards. */
#ifndef OFFLOAD_UTIL_ERR_H
#define OFFLOAD_UTIL_ERR_H

#include "offload/err.h"

#endif
