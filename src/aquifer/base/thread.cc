#include "aquifer/base/thread.h"

#include <string>

#if defined(__linux__)
#include <pthread.h>
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

}  // namespace aquifer
