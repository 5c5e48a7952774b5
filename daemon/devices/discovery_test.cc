// DiscoverDevices / ProbeDevices over both backends, pointed at the fake driver libraries through
// the path overrides, and at the real system libraries (whatever this machine has).
#include "daemon/devices/discovery.h"

#include <stdlib.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class DiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("MOED_FAKE_CUDA", "two", 1);
    setenv("MOED_FAKE_ZE", "two", 1);
    unsetenv("ZES_ENABLE_SYSMAN");
  }
  void TearDown() override {
    unsetenv("MOED_FAKE_CUDA");
    unsetenv("MOED_FAKE_ZE");
    unsetenv("ZES_ENABLE_SYSMAN");
  }

  static DiscoveryOptions FakeOptions() {
    DiscoveryOptions options;
    options.cuda_library = MOED_FAKE_CUDA_LIBRARY;
    options.level_zero_library = MOED_FAKE_LEVEL_ZERO_LIBRARY;
    return options;
  }
};

TEST_F(DiscoveryTest, ListsCudaDevicesThenLevelZeroDevices) {
  absl::StatusOr<std::vector<Device>> devices = DiscoverDevices(FakeOptions());
  ASSERT_TRUE(devices.ok()) << devices.status();
  ASSERT_EQ(devices->size(), 4u);
  EXPECT_EQ((*devices)[0].backend, DeviceBackend::kCuda);
  EXPECT_EQ((*devices)[0].name, "NVIDIA Fake H100 80GB HBM3");
  EXPECT_EQ((*devices)[1].backend, DeviceBackend::kCuda);
  EXPECT_EQ((*devices)[1].index, 1);
  EXPECT_EQ((*devices)[2].backend, DeviceBackend::kLevelZero);
  EXPECT_EQ((*devices)[2].name, "Intel(R) Data Center GPU Max 1550");
  EXPECT_EQ((*devices)[2].index, 0);
  EXPECT_EQ((*devices)[3].backend, DeviceBackend::kLevelZero);
  EXPECT_TRUE((*devices)[0].can_compute);
  EXPECT_FALSE((*devices)[2].can_compute);
}

TEST_F(DiscoveryTest, MissingLibrariesGiveAnEmptyListAndReasons) {
  DiscoveryOptions options;
  options.cuda_library = "/nonexistent/libcuda.so.1";
  options.level_zero_library = "/nonexistent/libze_loader.so.1";
  absl::StatusOr<std::vector<Device>> devices = DiscoverDevices(options);
  ASSERT_TRUE(devices.ok()) << devices.status();
  EXPECT_TRUE(devices->empty());

  absl::StatusOr<DiscoveryReport> report = ProbeDevices(options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->backends.size(), 2u);
  EXPECT_EQ(report->backends[0].backend, DeviceBackend::kCuda);
  EXPECT_TRUE(report->backends[0].enabled);
  EXPECT_FALSE(report->backends[0].present);
  EXPECT_THAT(report->backends[0].detail,
              HasSubstr("/nonexistent/libcuda.so.1: cannot open shared object file"));
  EXPECT_EQ(report->backends[1].backend, DeviceBackend::kLevelZero);
  EXPECT_FALSE(report->backends[1].present);
  EXPECT_THAT(report->backends[1].detail,
              HasSubstr("/nonexistent/libze_loader.so.1: cannot open shared object file"));
}

TEST_F(DiscoveryTest, DisabledBackendsAreNotLoaded) {
  DiscoveryOptions options = FakeOptions();
  options.enable_cuda = false;
  absl::StatusOr<DiscoveryReport> report = ProbeDevices(options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->backends.size(), 2u);
  EXPECT_FALSE(report->backends[0].enabled);
  EXPECT_EQ(report->backends[0].detail, "disabled by configuration");
  EXPECT_TRUE(report->backends[1].present);
  EXPECT_EQ(report->Devices().size(), 2u);

  options.enable_level_zero = false;
  absl::StatusOr<std::vector<Device>> devices = DiscoverDevices(options);
  ASSERT_TRUE(devices.ok()) << devices.status();
  EXPECT_TRUE(devices->empty());
}

TEST_F(DiscoveryTest, BackendErrorFailsDiscoveryWithItsMessage) {
  setenv("MOED_FAKE_CUDA", "name_fails", 1);
  absl::StatusOr<std::vector<Device>> devices = DiscoverDevices(FakeOptions());
  ASSERT_FALSE(devices.ok());
  EXPECT_THAT(std::string(devices.status().message()),
              StartsWith("CUDA: cuDeviceGetName(device 1) failed"));

  DiscoveryOptions options = FakeOptions();
  options.enable_cuda = false;  // the documented way to start without the broken backend
  devices = DiscoverDevices(options);
  ASSERT_TRUE(devices.ok()) << devices.status();
  EXPECT_EQ(devices->size(), 2u);
}

TEST_F(DiscoveryTest, AbsentCudaStillListsLevelZero) {
  setenv("MOED_FAKE_CUDA", "no_device", 1);
  absl::StatusOr<std::vector<Device>> devices = DiscoverDevices(FakeOptions());
  ASSERT_TRUE(devices.ok()) << devices.status();
  ASSERT_EQ(devices->size(), 2u);
  EXPECT_EQ((*devices)[0].backend, DeviceBackend::kLevelZero);
}

// The real system libraries: present or not, discovery must not fail on this machine.
TEST_F(DiscoveryTest, SystemLibrariesNeverFailDiscovery) {
  absl::StatusOr<DiscoveryReport> report = ProbeDevices(DiscoveryOptions{});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->backends.size(), 2u);
  for (const BackendProbe& probe : report->backends) {
    EXPECT_FALSE(probe.detail.empty());
    if (!probe.present) {
      EXPECT_TRUE(probe.devices.empty());
    }
  }
  for (const Device& device : report->Devices()) {
    EXPECT_FALSE(device.name.empty());
    EXPECT_GT(device.total_bytes, 0u);
  }
}

TEST(FormatDeviceTest, OneLineWithEverythingKnown) {
  Device device;
  device.backend = DeviceBackend::kCuda;
  device.index = 1;
  device.name = "NVIDIA H100 80GB HBM3";
  device.total_bytes = uint64_t{85} << 30;
  device.free_bytes = uint64_t{84} << 30;
  device.arch = "sm_90";
  device.uuid = "00112233-4455-6677-8899-aabbccddeeff";
  device.pci_bus_id = "0000:19:00.0";
  device.can_compute = true;
  EXPECT_EQ(FormatDevice(device),
            "cuda:1 NVIDIA H100 80GB HBM3, 85.0 GiB total, 84.0 GiB free, sm_90, "
            "uuid 00112233-4455-6677-8899-aabbccddeeff, pci 0000:19:00.0");

  device.backend = DeviceBackend::kLevelZero;
  device.free_bytes.reset();
  device.pci_bus_id.clear();
  device.can_compute = false;
  device.note = "discovered, no compute backend yet";
  EXPECT_THAT(FormatDevice(device),
              HasSubstr("unknown free, sm_90, uuid 00112233-4455-6677-8899-aabbccddeeff, not used "
                        "for compute (discovered, no compute backend yet)"));
}

TEST(FormatBytesTest, PicksAUnit) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(uint64_t{3} << 20), "3.0 MiB");
  EXPECT_EQ(FormatBytes((uint64_t{80} << 30) - (uint64_t{512} << 20)), "79.5 GiB");
}

TEST(DescribeHostCpuTest, DescribesThisMachine) {
  const Device cpu = DescribeHostCpu();
  EXPECT_EQ(cpu.backend, DeviceBackend::kCpu);
  EXPECT_FALSE(cpu.name.empty());
  EXPECT_GT(cpu.total_bytes, 0u);
  ASSERT_TRUE(cpu.free_bytes.has_value());  // Linux has had MemAvailable since 3.14
  EXPECT_LE(*cpu.free_bytes, cpu.total_bytes);
  EXPECT_FALSE(cpu.arch.empty());
  EXPECT_TRUE(cpu.can_compute);
}

}  // namespace
}  // namespace moed
