#include "base/check.h"

#include <cstdio>
#include <cstdlib>

namespace hikyaku::internal {

void CheckFailed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: invariant failed: %s\n", file, line, expr);
  std::fflush(stderr);
  std::abort();
}

}  // namespace hikyaku::internal
