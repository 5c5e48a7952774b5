// Intel GPU discovery through oneAPI Level Zero, loaded at run time with dlopen
// ("libze_loader.so.1"). moed has no Level Zero compute backend yet: the devices are reported with
// can_compute == false so the planner can say so and skip them.
#ifndef MOED_DAEMON_DEVICES_LEVEL_ZERO_DISCOVERY_H_
#define MOED_DAEMON_DEVICES_LEVEL_ZERO_DISCOVERY_H_

#include <string>

#include "absl/status/statusor.h"
#include "daemon/devices/device.h"

namespace moed {

struct LevelZeroProbeOptions {
  std::string library = "libze_loader.so.1";  // soname or path handed to dlopen
  // Free memory comes from Sysman (zesMemoryGetState). Loaders with zesInit use it; older ones
  // need ZES_ENABLE_SYSMAN=1 in the environment before zeInit, which the probe sets unless the
  // variable is already set (an explicit "0" is respected: free memory is then unknown).
  bool query_free_memory = true;
};

// Loads the loader library, calls zeInit(GPU only) and describes every GPU-type device of every
// driver (other device types, e.g. NPUs, are skipped). A missing library or symbol, or a failing
// zeInit (no driver installed), yield present == false and a one-line reason; a failing query
// after zeInit succeeded is an error naming the call and the ze_result_t.
// REQUIRES: no other thread is running yet when query_free_memory may set ZES_ENABLE_SYSMAN
// (setenv is not thread-safe); call it from main() before starting threads. It does not log.
absl::StatusOr<BackendProbe> ProbeLevelZero(const LevelZeroProbeOptions& options);

}  // namespace moed

#endif  // MOED_DAEMON_DEVICES_LEVEL_ZERO_DISCOVERY_H_
