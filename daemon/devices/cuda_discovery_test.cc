// ProbeCuda against fake_cuda.cc, a shared library exporting the driver API symbols with fixed
// answers (MOED_FAKE_CUDA picks its scenario): the real dlopen/dlsym path, without a GPU.
#include "daemon/devices/cuda_discovery.h"

#include <dlfcn.h>
#include <stdlib.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed {
namespace {

using ::testing::HasSubstr;

class CudaDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override { setenv("MOED_FAKE_CUDA", "two", 1); }
  void TearDown() override { unsetenv("MOED_FAKE_CUDA"); }

  static CudaProbeOptions FakeOptions() {
    CudaProbeOptions options;
    options.library = MOED_FAKE_CUDA_LIBRARY;
    return options;
  }

  // The fake's own bookkeeping, read through the same handle discovery loaded.
  static int FakeCounter(const char* name) {
    void* handle = dlopen(MOED_FAKE_CUDA_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    EXPECT_NE(handle, nullptr);
    if (handle == nullptr) return -1;
    auto* fn = reinterpret_cast<int (*)()>(dlsym(handle, name));
    EXPECT_NE(fn, nullptr) << name;
    const int value = fn != nullptr ? fn() : -1;
    dlclose(handle);
    return value;
  }
};

constexpr uint64_t kGiB = uint64_t{1} << 30;

TEST_F(CudaDiscoveryTest, DescribesTwoDevices) {
  absl::StatusOr<BackendProbe> probe = ProbeCuda(FakeOptions());
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_TRUE(probe->present);
  EXPECT_EQ(probe->backend, DeviceBackend::kCuda);
  EXPECT_EQ(probe->library, MOED_FAKE_CUDA_LIBRARY);
  EXPECT_EQ(probe->detail, "driver supports CUDA 12.4, 2 device(s)");
  ASSERT_EQ(probe->devices.size(), 2u);

  const Device& h100 = probe->devices[0];
  EXPECT_EQ(h100.backend, DeviceBackend::kCuda);
  EXPECT_EQ(h100.index, 0);
  EXPECT_EQ(h100.name, "NVIDIA Fake H100 80GB HBM3");
  EXPECT_EQ(h100.total_bytes, 80 * kGiB);
  ASSERT_TRUE(h100.free_bytes.has_value());
  EXPECT_EQ(*h100.free_bytes, 79 * kGiB + 512 * (kGiB >> 10));
  EXPECT_EQ(h100.compute_major, 9);
  EXPECT_EQ(h100.compute_minor, 0);
  EXPECT_EQ(h100.arch, "sm_90");
  EXPECT_EQ(h100.uuid, "10111213-1415-1617-1819-1a1b1c1d1e1f");
  EXPECT_EQ(h100.pci_bus_id, "0000:19:00.0");
  EXPECT_TRUE(h100.can_compute);
  EXPECT_EQ(h100.note, "");

  const Device& l4 = probe->devices[1];
  EXPECT_EQ(l4.index, 1);
  EXPECT_EQ(l4.name, "NVIDIA Fake L4");
  EXPECT_EQ(l4.total_bytes, 24 * kGiB);
  EXPECT_EQ(l4.free_bytes, 20 * kGiB);
  EXPECT_EQ(l4.arch, "sm_89");
  EXPECT_EQ(l4.uuid, "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf");
  EXPECT_EQ(l4.pci_bus_id, "0000:3b:00.0");  // the driver's upper-case hex, normalised

  // Every primary context retained for cuMemGetInfo was popped and released again.
  EXPECT_EQ(FakeCounter("moed_fake_cuda_open_contexts"), 0);
  EXPECT_EQ(FakeCounter("moed_fake_cuda_context_depth"), 0);
}

TEST_F(CudaDiscoveryTest, SkipsFreeMemoryWhenAsked) {
  CudaProbeOptions options = FakeOptions();
  options.query_free_memory = false;
  absl::StatusOr<BackendProbe> probe = ProbeCuda(options);
  ASSERT_TRUE(probe.ok()) << probe.status();
  ASSERT_EQ(probe->devices.size(), 2u);
  EXPECT_FALSE(probe->devices[0].free_bytes.has_value());
  EXPECT_EQ(probe->devices[0].total_bytes, 80 * kGiB);
}

TEST_F(CudaDiscoveryTest, MissingLibraryIsAbsentNotAnError) {
  CudaProbeOptions options;
  options.library = "/nonexistent/libcuda.so.1";
  absl::StatusOr<BackendProbe> probe = ProbeCuda(options);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_FALSE(probe->present);
  EXPECT_TRUE(probe->devices.empty());
  EXPECT_THAT(probe->detail, HasSubstr("driver library not loadable"));
  EXPECT_THAT(probe->detail, HasSubstr("/nonexistent/libcuda.so.1"));
  EXPECT_THAT(probe->detail, HasSubstr("No such file or directory"));
}

TEST_F(CudaDiscoveryTest, LibraryWithoutDriverSymbolsIsAbsent) {
  CudaProbeOptions options;
  options.library = MOED_FAKE_LEVEL_ZERO_LIBRARY;  // a real shared library, but not libcuda
  absl::StatusOr<BackendProbe> probe = ProbeCuda(options);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_FALSE(probe->present);
  EXPECT_THAT(probe->detail, HasSubstr("has no symbol cuInit"));
}

TEST_F(CudaDiscoveryTest, NoDeviceIsAbsent) {
  setenv("MOED_FAKE_CUDA", "no_device", 1);
  absl::StatusOr<BackendProbe> probe = ProbeCuda(FakeOptions());
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_FALSE(probe->present);
  EXPECT_TRUE(probe->devices.empty());
  EXPECT_EQ(probe->detail,
            "cuInit failed: CUDA_ERROR_NO_DEVICE (100): no CUDA-capable device is detected");
}

TEST_F(CudaDiscoveryTest, FailingInitIsAbsentWithTheDriverError) {
  setenv("MOED_FAKE_CUDA", "init_fails", 1);
  absl::StatusOr<BackendProbe> probe = ProbeCuda(FakeOptions());
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_FALSE(probe->present);
  EXPECT_TRUE(probe->devices.empty());
  EXPECT_EQ(probe->detail,
            "cuInit failed: CUDA_ERROR_INSUFFICIENT_DRIVER (35): CUDA driver version is "
            "insufficient for CUDA runtime version (driver present but unusable)");
}

TEST_F(CudaDiscoveryTest, ZeroDevicesIsPresentAndEmpty) {
  setenv("MOED_FAKE_CUDA", "zero", 1);
  absl::StatusOr<BackendProbe> probe = ProbeCuda(FakeOptions());
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_TRUE(probe->present);
  EXPECT_TRUE(probe->devices.empty());
  EXPECT_EQ(probe->detail, "driver supports CUDA 12.4, 0 device(s)");
}

TEST_F(CudaDiscoveryTest, QueryFailureAfterInitIsAnErrorNamingCallAndDevice) {
  setenv("MOED_FAKE_CUDA", "name_fails", 1);
  absl::StatusOr<BackendProbe> probe = ProbeCuda(FakeOptions());
  ASSERT_FALSE(probe.ok());
  EXPECT_EQ(probe.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(probe.status().message(),
            "CUDA: cuDeviceGetName(device 1) failed: CUDA_ERROR_INVALID_DEVICE (101): invalid "
            "device ordinal");
}

TEST_F(CudaDiscoveryTest, ContextFailureLeavesFreeMemoryUnknown) {
  setenv("MOED_FAKE_CUDA", "ctx_fails", 1);
  absl::StatusOr<BackendProbe> probe = ProbeCuda(FakeOptions());
  ASSERT_TRUE(probe.ok()) << probe.status();
  ASSERT_EQ(probe->devices.size(), 2u);
  EXPECT_TRUE(probe->devices[0].free_bytes.has_value());
  EXPECT_FALSE(probe->devices[1].free_bytes.has_value());
  EXPECT_EQ(probe->devices[1].note,
            "free memory unknown: cuDevicePrimaryCtxRetain failed: CUDA_ERROR_OUT_OF_MEMORY (2): "
            "out of memory");
  EXPECT_TRUE(probe->devices[1].can_compute);
  EXPECT_EQ(FakeCounter("moed_fake_cuda_open_contexts"), 0);
}

}  // namespace
}  // namespace moed
