// Tests of the metrics module: exact exposition bytes (escaping, histogram buckets, info), name
// validation, label-set checks, thread safety of the hot path, and moed's catalogue checked by
// the real `promtool check metrics`.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/metrics/counter.h"
#include "daemon/metrics/family.h"
#include "daemon/metrics/gauge.h"
#include "daemon/metrics/histogram.h"
#include "daemon/metrics/moed_metrics.h"
#include "daemon/metrics/names.h"
#include "daemon/metrics/registry.h"
#include "daemon/metrics/text_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed::metrics {
namespace {

using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// Text format primitives.

TEST(MetricsTextFormatTest, FormatsValuesAsGoParsesThem) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(0.0025), "0.0025");
  EXPECT_EQ(FormatValue(-1.5), "-1.5");
  EXPECT_EQ(FormatValue(1e21), "1e+21");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
  // Shortest round trip: reading the text back gives the same double.
  const double third = 1.0 / 3.0;
  EXPECT_EQ(std::strtod(FormatValue(third).c_str(), nullptr), third);
}

TEST(MetricsTextFormatTest, EscapesLabelValues) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\\b"), "a\\\\b");
  EXPECT_EQ(EscapeLabelValue("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(EscapeLabelValue("two\nlines"), "two\\nlines");
  EXPECT_EQ(EscapeLabelValue("tab\tstays"), "tab\tstays");
  EXPECT_EQ(EscapeLabelValue("\xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80"), "\xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80");
}

TEST(MetricsTextFormatTest, EscapesHelpWithoutTouchingQuotes) {
  EXPECT_EQ(EscapeHelp("a \"quoted\" \\ word\nnext"), "a \"quoted\" \\\\ word\\nnext");
}

TEST(MetricsTextFormatTest, ReplacesInvalidUtf8) {
  const std::string kReplacement = "\xEF\xBF\xBD";
  EXPECT_EQ(EscapeLabelValue(std::string("a\xFF" "b", 3)), "a" + kReplacement + "b");
  EXPECT_EQ(EscapeLabelValue("\xC0\xAF"), kReplacement + kReplacement);  // overlong '/'
  EXPECT_EQ(EscapeLabelValue("\xED\xA0\x80"), kReplacement + kReplacement + kReplacement);
  EXPECT_EQ(EscapeLabelValue("\xE2\x82"), kReplacement + kReplacement);  // truncated
  EXPECT_EQ(EscapeHelp("\xF4\x90\x80\x80"), kReplacement + kReplacement + kReplacement +
                                                kReplacement);  // above U+10FFFF
}

TEST(MetricsTextFormatTest, WritesSampleLines) {
  std::string out;
  AppendSample("m", "", {}, "", 3, &out);
  AppendSample("m", "_bucket", {{"b", "2"}, {"a", "1"}}, "0.5", 7, &out);
  AppendSample("m", "_bucket", {}, "+Inf", 8, &out);
  EXPECT_EQ(out,
            "m 3\n"
            "m_bucket{a=\"1\",b=\"2\",le=\"0.5\"} 7\n"
            "m_bucket{le=\"+Inf\"} 8\n");
}

// ---------------------------------------------------------------------------------------------
// Families and the exposition page.

TEST(MetricsRegistryTest, SerializesCountersAndGaugesWithEscapedLabels) {
  Registry registry;
  auto requests = registry.AddFamily<Counter>(
      {.name = "app_requests_total", .help = "Requests \\ with\nnewline.",
       .label_names = {"path", "code"}});
  ASSERT_TRUE(requests.ok()) << requests.status();
  (*requests)->Add({{"path", "/a\"b\\c\nd"}, {"code", "200"}}).Increment(3);
  (*requests)->Add({{"path", "/a"}, {"code", "500"}}).Increment();
  auto temperature = registry.AddFamily<Gauge>({.name = "app_temperature_celsius", .help = "T."});
  ASSERT_TRUE(temperature.ok());
  Gauge& t = (*temperature)->Add({});
  t.Set(20);
  t.Increment(2.5);
  t.Decrement(0.5);

  EXPECT_EQ(registry.Serialize(),
            "# HELP app_requests_total Requests \\\\ with\\nnewline.\n"
            "# TYPE app_requests_total counter\n"
            "app_requests_total{code=\"200\",path=\"/a\\\"b\\\\c\\nd\"} 3\n"
            "app_requests_total{code=\"500\",path=\"/a\"} 1\n"
            "# HELP app_temperature_celsius T.\n"
            "# TYPE app_temperature_celsius gauge\n"
            "app_temperature_celsius 22\n");
}

TEST(MetricsRegistryTest, CounterIgnoresNegativeAndNonFiniteIncrements) {
  Registry registry;
  Counter& c = (*registry.AddFamily<Counter>({.name = "c_total", .help = "h"}))->Add({});
  c.Increment(2);
  c.Increment(-1);
  c.Increment(std::nan(""));
  c.Increment(std::numeric_limits<double>::infinity());
  EXPECT_EQ(c.Value(), 2);
}

TEST(MetricsRegistryTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry registry;
  auto family = registry.AddFamily<Histogram>(
      {.name = "op_duration_seconds", .help = "Op time.", .label_names = {"op"},
       .buckets = {0.5, 1, 2.5}});
  ASSERT_TRUE(family.ok()) << family.status();
  Histogram& h = (*family)->Add({{"op", "read"}});
  for (double v : {0.25, 0.5, 1.0, 2.0, 3.0, 100.0}) h.Observe(v);
  h.Observe(std::nan(""));  // ignored
  (*family)->Add({{"op", "write"}});  // a child that saw nothing: all zeros

  EXPECT_EQ(registry.Serialize(),
            "# HELP op_duration_seconds Op time.\n"
            "# TYPE op_duration_seconds histogram\n"
            "op_duration_seconds_bucket{op=\"read\",le=\"0.5\"} 2\n"  // 0.25, 0.5 (le inclusive)
            "op_duration_seconds_bucket{op=\"read\",le=\"1\"} 3\n"
            "op_duration_seconds_bucket{op=\"read\",le=\"2.5\"} 4\n"
            "op_duration_seconds_bucket{op=\"read\",le=\"+Inf\"} 6\n"
            "op_duration_seconds_sum{op=\"read\"} 106.75\n"
            "op_duration_seconds_count{op=\"read\"} 6\n"
            "op_duration_seconds_bucket{op=\"write\",le=\"0.5\"} 0\n"
            "op_duration_seconds_bucket{op=\"write\",le=\"1\"} 0\n"
            "op_duration_seconds_bucket{op=\"write\",le=\"2.5\"} 0\n"
            "op_duration_seconds_bucket{op=\"write\",le=\"+Inf\"} 0\n"
            "op_duration_seconds_sum{op=\"write\"} 0\n"
            "op_duration_seconds_count{op=\"write\"} 0\n");
}

TEST(MetricsRegistryTest, HistogramWithoutFiniteBucketsHasOnlyInf) {
  Registry registry;
  auto family = registry.AddFamily<Histogram>(
      {.name = "x_seconds", .help = "h", .buckets = {std::numeric_limits<double>::infinity()}});
  ASSERT_TRUE(family.ok()) << family.status();
  (*family)->Add({}).Observe(-2);
  EXPECT_EQ(registry.Serialize(),
            "# HELP x_seconds h\n# TYPE x_seconds histogram\n"
            "x_seconds_bucket{le=\"+Inf\"} 1\nx_seconds_sum -2\nx_seconds_count 1\n");
}

TEST(MetricsRegistryTest, InfoIsAGaugeOfOneAndReplaceDropsOldSeries) {
  Registry registry;
  auto family = registry.AddFamily<Info>(
      {.name = "app_phase_info", .help = "Phase.", .label_names = {"phase"}});
  ASSERT_TRUE(family.ok()) << family.status();
  ASSERT_TRUE((*family)->Replace({{{"phase", "0"}}}).ok());
  ASSERT_TRUE((*family)->Replace({{{"phase", "1"}}}).ok());
  EXPECT_EQ(registry.Serialize(),
            "# HELP app_phase_info Phase.\n# TYPE app_phase_info gauge\napp_phase_info{phase=\"1\"} 1\n");
  // A bad set changes nothing.
  EXPECT_FALSE((*family)->Replace({{{"phase", "2"}}, {{"oops", "x"}}}).ok());
  EXPECT_EQ((*family)->size(), 1u);
  ASSERT_TRUE((*family)->Replace({}).ok());
  EXPECT_EQ((*family)->size(), 0u);
}

TEST(MetricsRegistryTest, EmptyFamilyWritesOnlyHeader) {
  Registry registry;
  ASSERT_TRUE(registry.AddFamily<Counter>({.name = "e_total", .help = "h", .label_names = {"w"}}).ok());
  EXPECT_EQ(registry.Serialize(), "# HELP e_total h\n# TYPE e_total counter\n");
}

TEST(MetricsFamilyTest, AddReturnsAStableReference) {
  Registry registry;
  Family<Counter>* family =
      *registry.AddFamily<Counter>({.name = "s_total", .help = "h", .label_names = {"k"}});
  Counter* first = &family->Add({{"k", "first"}});
  for (int i = 0; i < 1000; ++i) family->Add({{"k", absl::StrCat(i)}});
  EXPECT_EQ(&family->Add({{"k", "first"}}), first);
  EXPECT_EQ(family->size(), 1001u);
}

TEST(MetricsFamilyTest, WrongLabelSetsAreErrorsAndNeverExported) {
  Registry registry;
  Family<Counter>* family = *registry.AddFamily<Counter>(
      {.name = "l_total", .help = "h", .label_names = {"a", "b"}});
  auto missing = family->TryAdd({{"a", "1"}});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("missing label 'b'"));
  auto extra = family->TryAdd({{"a", "1"}, {"b", "2"}, {"c", "3"}});
  EXPECT_THAT(std::string(extra.status().message()), HasSubstr("'c' is not one of its labels"));
  auto swapped = family->TryAdd({{"a", "1"}, {"c", "3"}});
  EXPECT_FALSE(swapped.ok());

  // Add still hands out a usable counter, but it is detached from the page.
  Counter& detached = family->Add({{"zzz", "1"}});
  detached.Increment(5);
  EXPECT_EQ(family->size(), 0u);
  EXPECT_THAT(registry.Serialize(), ::testing::Not(HasSubstr("zzz")));
}

TEST(MetricsFamilyTest, MaxChildrenBoundsLabelSets) {
  Registry registry;
  Family<Gauge>* family = *registry.AddFamily<Gauge>(
      {.name = "bounded", .help = "h", .label_names = {"k"}, .max_children = 2});
  ASSERT_TRUE(family->TryAdd({{"k", "1"}}).ok());
  ASSERT_TRUE(family->TryAdd({{"k", "2"}}).ok());
  ASSERT_TRUE(family->TryAdd({{"k", "1"}}).ok());  // existing: fine
  EXPECT_EQ(family->TryAdd({{"k", "3"}}).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(family->size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Validation.

TEST(MetricsNamesTest, MetricNames) {
  EXPECT_TRUE(ValidateMetricName("moed_requests_total").ok());
  EXPECT_TRUE(ValidateMetricName("_x").ok());
  EXPECT_TRUE(ValidateMetricName("job:rate5m").ok());  // valid data model, see conventions
  EXPECT_TRUE(ValidateMetricName("a1").ok());
  for (const char* bad : {"", "1abc", "a-b", "a b", "é", "a.b", "__reserved"}) {
    const absl::Status status = ValidateMetricName(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(std::string(ValidateMetricName("__x").message()), HasSubstr("reserved"));
  EXPECT_THAT(std::string(ValidateMetricName("a-b").message()), HasSubstr("offset 1"));
}

TEST(MetricsNamesTest, LabelNames) {
  EXPECT_TRUE(ValidateLabelName("worker").ok());
  EXPECT_TRUE(ValidateLabelName("_w2").ok());
  for (const char* bad : {"", "9a", "a:b", "a-b", "__name__"}) {
    EXPECT_EQ(ValidateLabelName(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(MetricsNamesTest, NamingConventions) {
  EXPECT_TRUE(CheckNamingConventions(MetricType::kCounter, "a_bytes_total").ok());
  EXPECT_TRUE(CheckNamingConventions(MetricType::kHistogram, "a_seconds").ok());
  EXPECT_TRUE(CheckNamingConventions(MetricType::kInfo, "a_info").ok());
  struct Case {
    MetricType type;
    const char* name;
    const char* why;
  };
  for (const Case& c : std::vector<Case>{
           {MetricType::kCounter, "requests", "must end in \"_total\""},
           {MetricType::kGauge, "queue_total", "only counters"},
           {MetricType::kInfo, "build", "must end in \"_info\""},
           {MetricType::kGauge, "x_count", "only histograms"},
           {MetricType::kCounter, "x_sum_total", ""},  // fine: ends in _total
           {MetricType::kGauge, "x_bucket", "only histograms"},
           {MetricType::kGauge, "queue_gauge", "type 'gauge'"},
           {MetricType::kCounter, "x_counter_total", "type 'counter'"},
           {MetricType::kGauge, "job:queue", "recording rules"},
           {MetricType::kGauge, "queueLength", "camelCase"},
           {MetricType::kHistogram, "latency_ms", "abbreviated unit 'ms'"},
           {MetricType::kGauge, "load_s", "abbreviated unit 's'"},
           {MetricType::kHistogram, "latency_milliseconds", "'milliseconds' is not a base unit"},
           {MetricType::kGauge, "memory_kilobytes", "'kilobytes'"},
           {MetricType::kGauge, "uptime_hours", "'hours'"},
       }) {
    const absl::Status status = CheckNamingConventions(c.type, c.name);
    if (std::string(c.why).empty()) {
      EXPECT_TRUE(status.ok()) << c.name << ": " << status;
    } else {
      EXPECT_THAT(std::string(status.message()), HasSubstr(c.why)) << c.name;
    }
  }
  EXPECT_FALSE(CheckLabelConventions("le").ok());
  EXPECT_FALSE(CheckLabelConventions("quantile").ok());
  EXPECT_FALSE(CheckLabelConventions("deviceId").ok());
  EXPECT_TRUE(CheckLabelConventions("device_id").ok());
}

TEST(MetricsRegistryTest, RejectsBadFamilies) {
  Registry registry;
  auto code = [&](auto status_or) { return status_or.status().code(); };
  using absl::StatusCode;
  EXPECT_EQ(code(registry.AddFamily<Gauge>({.name = "1bad", .help = "h"})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Gauge>({.name = "__bad", .help = "h"})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Counter>({.name = "no_suffix", .help = "h"})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Gauge>({.name = "no_help"})), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Gauge>({.name = "g", .help = "h", .label_names = {"__x"}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Gauge>({.name = "g", .help = "h", .label_names = {"a-b"}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Gauge>({.name = "g", .help = "h", .label_names = {"a", "a"}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Histogram>(
                {.name = "h_seconds", .help = "h", .label_names = {"le"}, .buckets = {1}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Histogram>(
                {.name = "h_seconds", .help = "h", .buckets = {1, 1}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Histogram>(
                {.name = "h_seconds", .help = "h", .buckets = {2, 1}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Histogram>(
                {.name = "h_seconds", .help = "h", .buckets = {1, std::nan("")}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Histogram>(
                {.name = "h_seconds", .help = "h",
                 .buckets = {std::numeric_limits<double>::infinity(), 1}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Gauge>({.name = "g", .help = "h", .buckets = {1}})),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(registry.AddFamily<Gauge>({.name = "g", .help = "h", .max_children = 0})),
            StatusCode::kInvalidArgument);
  // Nothing above was registered, so the names are still free.
  EXPECT_EQ(registry.Serialize(), "");

  ASSERT_TRUE(registry.AddFamily<Gauge>({.name = "dup", .help = "h"}).ok());
  auto again = registry.AddFamily<Gauge>({.name = "dup", .help = "other"});
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("'dup' is already registered"));
  EXPECT_EQ(code(registry.AddFamily<Histogram>({.name = "dup", .help = "h"})),
            StatusCode::kAlreadyExists);

  // A histogram's series names are taken too: "lat" writes lat_bucket, lat_sum, lat_count.
  ASSERT_TRUE(registry.AddFamily<Histogram>({.name = "lat", .help = "h"}).ok());
  auto clash = registry.AddFamily<Histogram>({.name = "lat_count", .help = "h"});
  EXPECT_EQ(clash.status().code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(clash.status().message()), HasSubstr("'lat_count'"));
}

TEST(MetricsHistogramTest, ExponentialBuckets) {
  auto buckets = ExponentialBuckets(0.001, 10, 4);
  ASSERT_TRUE(buckets.ok());
  ASSERT_EQ(buckets->size(), 4u);
  EXPECT_DOUBLE_EQ((*buckets)[3], 1.0);
  EXPECT_FALSE(ExponentialBuckets(0, 2, 3).ok());
  EXPECT_FALSE(ExponentialBuckets(1, 1, 3).ok());
  EXPECT_FALSE(ExponentialBuckets(1, 2, 0).ok());
  EXPECT_FALSE(ExponentialBuckets(1e300, 1e10, 10).ok());  // overflows to +Inf
}

// ---------------------------------------------------------------------------------------------
// Concurrency: exact totals from many threads on the same child.

TEST(MetricsConcurrencyTest, ManyThreadsIncrementOneChildExactly) {
  Registry registry;
  Family<Counter>* counters =
      *registry.AddFamily<Counter>({.name = "hits_total", .help = "h", .label_names = {"k"}});
  Family<Gauge>* gauges = *registry.AddFamily<Gauge>({.name = "level", .help = "h"});
  Family<Histogram>* histograms = *registry.AddFamily<Histogram>(
      {.name = "step_seconds", .help = "h", .buckets = {0.5, 1.5}});
  constexpr int kThreads = 8;
  constexpr int kIterations = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Every thread looks the child up itself: Add races with Add as well.
      Counter& c = counters->Add({{"k", "same"}});
      Gauge& g = gauges->Add({});
      Histogram& h = histograms->Add({});
      for (int i = 0; i < kIterations; ++i) {
        c.Increment();
        g.Increment(2);
        g.Decrement();
        h.Observe((i + t) % 2 == 0 ? 1.0 : 2.0);
        if (i % 10000 == 0) (void)registry.Serialize();  // scrapes race with the hot path
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(counters->Add({{"k", "same"}}).Value(), double{kThreads} * kIterations);
  EXPECT_EQ(counters->size(), 1u);
  EXPECT_EQ(gauges->Add({}).Value(), double{kThreads} * kIterations);
  const Histogram::Snapshot snap = histograms->Add({}).Read();
  EXPECT_EQ(snap.count, uint64_t{kThreads} * kIterations);
  EXPECT_EQ(snap.cumulative[0], 0u);
  EXPECT_EQ(snap.cumulative[1], uint64_t{kThreads} * kIterations / 2);
  EXPECT_EQ(snap.cumulative[2], snap.count);
  EXPECT_EQ(snap.sum, 1.5 * kThreads * kIterations);
}

// ---------------------------------------------------------------------------------------------
// moed's catalogue, checked by promtool.

// The metrics the dashboard and alert rules (issue "Deployment") are written against.
const std::vector<std::string> kCatalogue = {
    "moed_requests_total",
    "moed_prompt_tokens_total",
    "moed_generation_tokens_total",
    "moed_time_to_first_token_seconds",
    "moed_inter_token_latency_seconds",
    "moed_e2e_request_latency_seconds",
    "moed_queue_length",
    "moed_queue_capacity",
    "moed_running_sequences",
    "moed_slots_used",
    "moed_slots_capacity",
    "moed_kv_blocks_used",
    "moed_kv_blocks_capacity",
    "moed_prefix_cache_lookups_total",
    "moed_prefix_cache_hits_total",
    "moed_worker_step_duration_seconds",
    "moed_worker_restarts_total",
    "moed_worker_up",
    "moed_worker_memory_bytes",
    "moed_worker_idle_ratio",
    "moed_model_load_seconds",
    "moed_phase_info",
    "moed_budget_info",
    "moed_build_info",
};

std::unique_ptr<MoedMetrics> PopulatedMoedMetrics() {
  auto created = MoedMetrics::Create({.version = "0.1.0", .revision = "abc123"});
  EXPECT_TRUE(created.ok()) << created.status();
  if (!created.ok()) return nullptr;
  MoedMetrics& m = **created;
  m.Request("/v1/chat/completions", 200).Increment(5);
  m.Request("/v1/chat/completions", 429).Increment();
  m.Request("/v1/completions", 400).Increment(2);
  m.prompt_tokens().Increment(1234);
  m.generation_tokens().Increment(567);
  for (double v : {0.003, 0.2, 1.7, 30.0}) m.time_to_first_token().Observe(v);
  for (double v : {0.004, 0.02, 0.08}) m.inter_token_latency().Observe(v);
  for (double v : {0.9, 12.0, 5000.0}) m.e2e_request_latency().Observe(v);
  m.queue_length().Set(3);
  m.queue_capacity().Set(256);
  m.running_sequences().Set(8);
  m.slots_used().Set(8);
  m.slots_capacity().Set(16);
  m.kv_blocks_used().Set(120);
  m.kv_blocks_capacity().Set(4096);
  m.prefix_cache_lookups().Increment(10);
  m.prefix_cache_hits().Increment(4);
  for (const char* worker : {"0", "1"}) {
    EXPECT_TRUE(m.RegisterWorker(worker).ok());
    m.WorkerStep(worker).Observe(0.0021);
    m.WorkerUp(worker).Set(1);
    m.WorkerMemory(worker).Set(3.5e9);
    m.WorkerIdle(worker).Set(0.25);
  }
  m.WorkerRestarts("1").Increment();
  m.model_load_seconds().Set(4.25);
  // Awkward label values must still make a valid page.
  EXPECT_TRUE(m.SetPhase("demo \"q\"\\model\nv2", "1").ok());
  EXPECT_TRUE(m.SetBudgets("demo", {{"cuda:0", 20ull << 30}, {"cuda:1", 22ull << 30}}).ok());
  return std::move(created).value();
}

TEST(MetricsMoedMetricsTest, CatalogueIsCompleteAndDocumented) {
  std::unique_ptr<MoedMetrics> m = PopulatedMoedMetrics();
  ASSERT_NE(m, nullptr);
  std::vector<std::string> names;
  for (const FamilyDescription& family : m->registry().Describe()) {
    EXPECT_TRUE(absl::StartsWith(family.name, "moed_")) << family.name;
    EXPECT_FALSE(family.help.empty()) << family.name;
    names.push_back(family.name);
  }
  EXPECT_THAT(names, ::testing::UnorderedElementsAreArray(kCatalogue));

  // Every family appears on the page with its HELP and TYPE, in the order of Describe().
  const std::string page = m->Serialize();
  std::vector<std::string> typed;
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      typed.push_back(parts[2]);
    }
  }
  EXPECT_EQ(typed, names);
  EXPECT_THAT(page, HasSubstr("moed_worker_restarts_total{worker=\"0\"} 0\n"));
  EXPECT_THAT(page, HasSubstr("moed_worker_restarts_total{worker=\"1\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("moed_requests_total{endpoint=\"/v1/chat/completions\",status=\"429\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("moed_build_info{compiler=\""));
  EXPECT_THAT(page, HasSubstr("revision=\"abc123\",version=\"0.1.0\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("# TYPE moed_build_info gauge\n"));
  EXPECT_THAT(page, HasSubstr("moed_phase_info{model=\"demo \\\"q\\\"\\\\model\\nv2\",phase=\"1\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("budget_bytes=\"21474836480\",device=\"cuda:0\",model=\"demo\"} 1\n"));

  // A phase switch leaves one phase series; clearing budgets leaves none.
  ASSERT_TRUE(m->SetPhase("demo", "0").ok());
  ASSERT_TRUE(m->SetBudgets("demo", {}).ok());
  const std::string after = m->Serialize();
  EXPECT_THAT(after, HasSubstr("moed_phase_info{model=\"demo\",phase=\"0\"} 1\n"));
  EXPECT_THAT(after, ::testing::Not(HasSubstr("phase=\"1\"")));
  EXPECT_THAT(after, ::testing::Not(HasSubstr("moed_budget_info{")));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Path of promtool, or empty. Debian's `prometheus` package installs /usr/bin/promtool.
std::string FindPromtool() {
  if (access("/usr/bin/promtool", X_OK) == 0) return "/usr/bin/promtool";
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    const std::string candidate = absl::StrCat(dir, "/promtool");
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

struct PromtoolResult {
  int exit_code = -1;
  std::string output;
};

// Runs `promtool check metrics` on `page` (it reads the page on stdin).
PromtoolResult RunPromtool(const std::string& promtool, const std::string& page,
                           const std::string& tag) {
  const std::string dir = ::testing::TempDir();
  const std::string in = absl::StrCat(dir, "/moed_metrics_", tag, "_", getpid(), ".prom");
  const std::string out = in + ".out";
  {
    std::ofstream file(in, std::ios::binary);
    file << page;
  }
  const std::string command =
      absl::StrCat("'", promtool, "' check metrics < '", in, "' > '", out, "' 2>&1");
  const int status = std::system(command.c_str());
  PromtoolResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.output = ReadFile(out);
  std::remove(in.c_str());
  std::remove(out.c_str());
  return result;
}

TEST(MetricsMoedMetricsTest, PromtoolAcceptsTheFullExposition) {
  const std::string promtool = FindPromtool();
  ASSERT_FALSE(promtool.empty())
      << "promtool not found (looked at /usr/bin/promtool and $PATH): install Debian's "
         "'prometheus' package, as scripts/install-deps.sh does; this test does not skip";
  std::unique_ptr<MoedMetrics> m = PopulatedMoedMetrics();
  ASSERT_NE(m, nullptr);
  const std::string page = m->Serialize();
  const PromtoolResult result = RunPromtool(promtool, page, "full");
  EXPECT_EQ(result.exit_code, 0) << "promtool check metrics failed:\n"
                                 << result.output << "\n--- page ---\n" << page;
  EXPECT_EQ(result.output, "") << "promtool reported problems:\n" << result.output;
}

TEST(MetricsMoedMetricsTest, PromtoolHarnessSeesProblems) {
  // Negative control: the harness above would notice a lint problem and a parse error.
  const std::string promtool = FindPromtool();
  ASSERT_FALSE(promtool.empty()) << "promtool not found: install Debian's 'prometheus' package";
  const PromtoolResult lint = RunPromtool(
      promtool, "# HELP moed_requests Requests.\n# TYPE moed_requests counter\nmoed_requests 1\n",
      "lint");
  EXPECT_NE(lint.exit_code, 0);
  EXPECT_THAT(lint.output, HasSubstr("_total"));
  const PromtoolResult parse =
      RunPromtool(promtool, "# TYPE x gauge\nx{a=\"unterminated} 1\n", "parse");
  EXPECT_NE(parse.exit_code, 0);
}

}  // namespace
}  // namespace moed::metrics
