#include "aquifer/base/thread.h"

#include <string>

#if defined(__linux__)
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#endif

namespace aquifer {

void NameThisThread(std::string_view name) {
#if defined(__linux__)
  std::string truncated(name.substr(0, 15));  // the kernel keeps 16 bytes with the NUL
  pthread_setname_np(pthread_self(), truncated.c_str());
#else
  (void)name;
#endif
}

int ThisThreadNice() {
#if defined(__linux__)
  // On Linux PRIO_PROCESS with a thread id names that thread alone.
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
  return errno == 0 ? nice : 0;
#else
  return 0;
#endif
}

bool LowerThisThreadPriority(int nice) {
#if defined(__linux__)
  if (ThisThreadNice() >= nice) return true;
  return setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice) == 0;
#else
  (void)nice;
  return true;
#endif
}

}  // namespace aquifer
