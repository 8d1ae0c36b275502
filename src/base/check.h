// HIKYAKU_CHECK(cond): an always-on invariant check. A failure is a bug in
// hikyaku, never something the environment can cause: it logs and aborts.
#pragma once

namespace hikyaku::internal {
[[noreturn]] void CheckFailed(const char* expr, const char* file, int line);
}  // namespace hikyaku::internal

#define HIKYAKU_CHECK(cond)                                          \
  do {                                                               \
    if (!(cond)) [[unlikely]]                                        \
      ::hikyaku::internal::CheckFailed(#cond, __FILE__, __LINE__);   \
  } while (0)
