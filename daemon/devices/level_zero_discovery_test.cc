// ProbeLevelZero against fake_level_zero.cc (compiled against the real Level Zero headers, so
// these values also check the struct layouts moed declares itself). MOED_FAKE_ZE picks the
// scenario; two builds of the fake cover the legacy (ZES_ENABLE_SYSMAN) and the zesInit Sysman.
#include "daemon/devices/level_zero_discovery.h"

#include <stdlib.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kGiB = uint64_t{1} << 30;

class LevelZeroDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("MOED_FAKE_ZE", "two", 1);
    unsetenv("ZES_ENABLE_SYSMAN");
  }
  void TearDown() override {
    unsetenv("MOED_FAKE_ZE");
    unsetenv("ZES_ENABLE_SYSMAN");
  }

  static LevelZeroProbeOptions Options(const char* library) {
    LevelZeroProbeOptions options;
    options.library = library;
    return options;
  }
};

// Both GPUs of the fake, as discovery must describe them whichever Sysman flavour is in use.
void ExpectTwoGpus(const BackendProbe& probe) {
  EXPECT_TRUE(probe.present);
  EXPECT_EQ(probe.backend, DeviceBackend::kLevelZero);
  EXPECT_EQ(probe.detail, "API 1.3, 1 driver(s), 2 GPU(s)");
  ASSERT_EQ(probe.devices.size(), 2u);  // the NPU (ZE_DEVICE_TYPE_VPU) is skipped

  const Device& max = probe.devices[0];
  EXPECT_EQ(max.backend, DeviceBackend::kLevelZero);
  EXPECT_EQ(max.index, 0);
  EXPECT_EQ(max.name, "Intel(R) Data Center GPU Max 1550");
  EXPECT_EQ(max.total_bytes, 128 * kGiB);  // two memory properties summed
  ASSERT_TRUE(max.free_bytes.has_value());
  EXPECT_EQ(*max.free_bytes, 121 * kGiB);  // device-local modules only, system one ignored
  EXPECT_EQ(max.uuid, "20212223-2425-2627-2829-2a2b2c2d2e2f");
  EXPECT_EQ(max.arch, "8086:0bd5");
  EXPECT_EQ(max.compute_major, 0);
  EXPECT_FALSE(max.can_compute);
  EXPECT_EQ(max.note, "discovered, no compute backend yet");

  const Device& arc = probe.devices[1];
  EXPECT_EQ(arc.index, 1);
  EXPECT_EQ(arc.name, "Intel(R) Arc(TM) A770 Graphics");
  EXPECT_EQ(arc.total_bytes, 16 * kGiB);
  EXPECT_EQ(arc.free_bytes, 15 * kGiB);
  EXPECT_EQ(arc.uuid, "60616263-6465-6667-6869-6a6b6c6d6e6f");
  EXPECT_EQ(arc.arch, "8086:56a0");
  EXPECT_FALSE(arc.can_compute);
}

TEST_F(LevelZeroDiscoveryTest, LegacySysmanIsRequestedBeforeZeInit) {
  absl::StatusOr<BackendProbe> probe = ProbeLevelZero(Options(MOED_FAKE_LEVEL_ZERO_LIBRARY));
  ASSERT_TRUE(probe.ok()) << probe.status();
  ExpectTwoGpus(*probe);
  const char* env = getenv("ZES_ENABLE_SYSMAN");
  ASSERT_NE(env, nullptr);
  EXPECT_EQ(std::string(env), "1");
}

TEST_F(LevelZeroDiscoveryTest, ZesInitSysmanHandlesAreMatchedByUuid) {
  absl::StatusOr<BackendProbe> probe =
      ProbeLevelZero(Options(MOED_FAKE_LEVEL_ZERO_ZESINIT_LIBRARY));
  ASSERT_TRUE(probe.ok()) << probe.status();
  ExpectTwoGpus(*probe);  // the fake lists Sysman handles in reverse order
  EXPECT_EQ(getenv("ZES_ENABLE_SYSMAN"), nullptr);  // not needed, so not set
}

TEST_F(LevelZeroDiscoveryTest, ExplicitSysmanOptOutIsRespected) {
  setenv("ZES_ENABLE_SYSMAN", "0", 1);
  absl::StatusOr<BackendProbe> probe = ProbeLevelZero(Options(MOED_FAKE_LEVEL_ZERO_LIBRARY));
  ASSERT_TRUE(probe.ok()) << probe.status();
  ASSERT_EQ(probe->devices.size(), 2u);
  EXPECT_EQ(probe->devices[0].total_bytes, 128 * kGiB);
  EXPECT_FALSE(probe->devices[0].free_bytes.has_value());
  EXPECT_EQ(probe->devices[0].note,
            "discovered, no compute backend yet; free memory unknown: Sysman unavailable");
  EXPECT_EQ(std::string(getenv("ZES_ENABLE_SYSMAN")), "0");
}

TEST_F(LevelZeroDiscoveryTest, SysmanWithoutMemoryModulesLeavesFreeUnknown) {
  setenv("MOED_FAKE_ZE", "no_sysman_memory", 1);
  absl::StatusOr<BackendProbe> probe = ProbeLevelZero(Options(MOED_FAKE_LEVEL_ZERO_LIBRARY));
  ASSERT_TRUE(probe.ok()) << probe.status();
  ASSERT_EQ(probe->devices.size(), 2u);
  EXPECT_FALSE(probe->devices[1].free_bytes.has_value());
  EXPECT_EQ(probe->devices[1].note,
            "discovered, no compute backend yet; free memory unknown: "
            "zesDeviceEnumMemoryModules failed: ZE_RESULT_ERROR_UNSUPPORTED_FEATURE (0x78000003)");
}

TEST_F(LevelZeroDiscoveryTest, FailingInitIsAbsentNotAnError) {
  setenv("MOED_FAKE_ZE", "init_fails", 1);
  absl::StatusOr<BackendProbe> probe = ProbeLevelZero(Options(MOED_FAKE_LEVEL_ZERO_LIBRARY));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_FALSE(probe->present);
  EXPECT_TRUE(probe->devices.empty());
  EXPECT_EQ(probe->detail,
            "zeInit failed: ZE_RESULT_ERROR_UNINITIALIZED (0x78000001) (no Level Zero GPU driver)");
}

TEST_F(LevelZeroDiscoveryTest, QueryFailureAfterInitIsAnError) {
  setenv("MOED_FAKE_ZE", "props_fail", 1);
  absl::StatusOr<BackendProbe> probe = ProbeLevelZero(Options(MOED_FAKE_LEVEL_ZERO_LIBRARY));
  ASSERT_FALSE(probe.ok());
  EXPECT_EQ(probe.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(probe.status().message(),
            "Level Zero: zeDeviceGetProperties failed: ZE_RESULT_ERROR_DEVICE_LOST (0x70000001)");
}

TEST_F(LevelZeroDiscoveryTest, MissingLibraryIsAbsent) {
  absl::StatusOr<BackendProbe> probe = ProbeLevelZero(Options("/nonexistent/libze_loader.so.1"));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_FALSE(probe->present);
  EXPECT_THAT(probe->detail, HasSubstr("loader library not loadable"));
  EXPECT_THAT(probe->detail, HasSubstr("/nonexistent/libze_loader.so.1"));
}

TEST_F(LevelZeroDiscoveryTest, LibraryWithoutLoaderSymbolsIsAbsent) {
  absl::StatusOr<BackendProbe> probe = ProbeLevelZero(Options(MOED_FAKE_CUDA_LIBRARY));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_FALSE(probe->present);
  EXPECT_THAT(probe->detail, HasSubstr("has no symbol zeInit"));
}

}  // namespace
}  // namespace moed
