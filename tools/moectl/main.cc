// moectl: the operator's command line for a running moed, over its gRPC admin API
// (proto/moed/admin/v1/admin.proto). Human-readable output by default, --json for scripts.
//
//   moectl [--socket PATH | --address HOST:PORT (--token T | --token-file F)] COMMAND [--json]
//   COMMAND: status | plan | models | load PATH | unload | phase VARIANT|auto | drain | shutdown
//
// Exit status: 0 on success, 1 when moed cannot be reached or the call fails, 2 for bad usage.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "moed/admin/v1/admin.grpc.pb.h"

namespace {

namespace v1 = ::moed::admin::v1;

constexpr char kDefaultSocket[] = "/run/moed/admin.sock";
constexpr int kCallSeconds = 10;
// Model changes wait for the old requests to drain and the new workers to load.
constexpr int kReloadSeconds = 900;

constexpr char kUsage[] =
    "usage: moectl [--socket PATH | --address HOST:PORT --token T|--token-file F] COMMAND [--json]\n"
    "\n"
    "commands:\n"
    "  status     devices, plan summary, workers, queue, slots, drain state\n"
    "  plan       the placement plan (as `moed --dry-run` prints it)\n"
    "  models     the model served, with its phase and the phases its file carries\n"
    "  load PATH [--name ID] [--variant V | --budget MIB]\n"
    "             serve another GGUF file instead (drains the current one, reloads the workers)\n"
    "  unload     drain and stop the served model; generation answers 503 until `load`\n"
    "  phase V | --budget MIB | auto\n"
    "             re-plan the served Phase Twin model in variant V, a weight budget, or the\n"
    "             planner's choice, and reload the workers\n"
    "  drain      stop accepting generation requests (503); requests in flight finish\n"
    "  shutdown   drain, then stop moed (as SIGTERM does)\n"
    "\n"
    "options:\n"
    "  --socket PATH      the admin Unix socket (default: $MOED_ADMIN_SOCKET, else /run/moed/admin.sock)\n"
    "  --address H:P      the admin TCP endpoint (admin.tcp_listen) instead of the socket\n"
    "  --token T          the admin token for --address (default: $MOED_ADMIN_TOKEN)\n"
    "  --token-file F     read the token from the first line of F\n"
    "  --json             machine-readable output\n"
    "  --timeout S        seconds to wait for the answer (default 10; 900 for load and phase)\n";

struct Options {
  std::string target;  // gRPC target: "unix:/path" or "host:port"
  std::string token;
  std::string command;
  std::string argument;  // load: the path; phase: the variant or "auto"
  std::string name;      // load --name
  std::optional<uint32_t> variant;
  std::optional<uint64_t> budget_mb;
  int timeout_seconds = 0;  // 0: the command's default
  bool json = false;
};

bool ParseUnsigned(std::string_view text, uint64_t* out) {
  if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string_view::npos) return false;
  *out = std::stoull(std::string(text));
  return true;
}

int UsageError(const std::string& message) {
  std::fprintf(stderr, "moectl: %s\n\n%s", message.c_str(), kUsage);
  return 2;
}

// Parses argv into `options`; returns an exit code (-1: go on).
int ParseArgs(int argc, char** argv, Options* options) {
  std::string socket;
  std::string address;
  std::string token_file;
  bool have_token = false;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    std::string value;
    // --name VALUE and --name=VALUE for the options that take a value.
    auto take = [&](std::string_view name) -> int {
      if (a == name) {
        if (i + 1 >= args.size()) return 0;
        value = std::string(args[++i]);
        return 1;
      }
      if (a.size() > name.size() && a.substr(0, name.size()) == name && a[name.size()] == '=') {
        value = std::string(a.substr(name.size() + 1));
        return 1;
      }
      return -1;
    };
    int r;
    if (a == "-h" || a == "--help" || a == "help") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a == "--json") {
      options->json = true;
    } else if ((r = take("--socket")) >= 0) {
      if (r == 0) return UsageError("--socket needs a path");
      socket = value;
    } else if ((r = take("--address")) >= 0) {
      if (r == 0) return UsageError("--address needs HOST:PORT");
      address = value;
    } else if ((r = take("--token")) >= 0) {
      if (r == 0) return UsageError("--token needs a value");
      options->token = value;
      have_token = true;
    } else if ((r = take("--token-file")) >= 0) {
      if (r == 0) return UsageError("--token-file needs a path");
      token_file = value;
    } else if ((r = take("--name")) >= 0) {
      if (r == 0) return UsageError("--name needs a model id");
      options->name = value;
    } else if ((r = take("--variant")) >= 0) {
      uint64_t v = 0;
      if (r == 0 || !ParseUnsigned(value, &v) || v > 255) return UsageError("--variant needs a variant index (0, 1, ...)");
      options->variant = static_cast<uint32_t>(v);
    } else if ((r = take("--budget")) >= 0) {
      uint64_t v = 0;
      if (r == 0 || !ParseUnsigned(value, &v) || v == 0) return UsageError("--budget needs a size in MiB");
      options->budget_mb = v;
    } else if ((r = take("--timeout")) >= 0) {
      uint64_t v = 0;
      if (r == 0 || !ParseUnsigned(value, &v) || v == 0 || v > 86400) return UsageError("--timeout needs seconds");
      options->timeout_seconds = static_cast<int>(v);
    } else if (!a.empty() && a[0] == '-') {
      return UsageError(absl::StrCat("unknown option '", std::string(a), "'"));
    } else if (options->command.empty()) {
      options->command = std::string(a);
    } else if (options->argument.empty() && (options->command == "load" || options->command == "phase")) {
      options->argument = std::string(a);
    } else {
      return UsageError(absl::StrCat("unexpected argument '", std::string(a), "'"));
    }
  }
  if (options->command.empty()) return UsageError("missing command");
  static constexpr std::string_view kCommands[] = {"status", "plan",  "models", "load",
                                                    "unload", "phase", "drain",  "shutdown"};
  if (std::find(std::begin(kCommands), std::end(kCommands), options->command) == std::end(kCommands)) {
    return UsageError(absl::StrCat("unknown command '", options->command, "'"));
  }
  if (options->variant && options->budget_mb) return UsageError("--variant and --budget exclude each other");
  if (options->command == "load" && options->argument.empty()) return UsageError("load needs the path of a GGUF file");
  if (options->command == "phase") {
    uint64_t v = 0;
    if (options->argument == "auto") {
      if (options->variant || options->budget_mb) return UsageError("phase auto takes no --variant or --budget");
    } else if (ParseUnsigned(options->argument, &v) && v <= 255 && !options->variant && !options->budget_mb) {
      options->variant = static_cast<uint32_t>(v);
    } else if (!options->argument.empty() || (!options->variant && !options->budget_mb)) {
      return UsageError("phase needs a variant index, --budget MIB, or auto");
    }
  }
  if (!socket.empty() && !address.empty()) return UsageError("--socket and --address exclude each other");
  if (have_token && !token_file.empty()) return UsageError("--token and --token-file exclude each other");
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    if (!in || !std::getline(in, options->token)) {
      std::fprintf(stderr, "moectl: cannot read the token file %s\n", token_file.c_str());
      return 1;
    }
    while (!options->token.empty() && (options->token.back() == '\r' || options->token.back() == ' ')) {
      options->token.pop_back();
    }
  }
  if (!address.empty()) {
    options->target = address;
    if (options->token.empty()) {
      if (const char* env = std::getenv("MOED_ADMIN_TOKEN")) options->token = env;
    }
  } else {
    if (socket.empty()) {
      const char* env = std::getenv("MOED_ADMIN_SOCKET");
      socket = env != nullptr && *env != '\0' ? env : kDefaultSocket;
    }
    options->target = "unix:" + socket;
  }
  return -1;
}

std::string Bytes(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) return absl::StrFormat("%.1f GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return absl::StrFormat("%.1f MiB", b / (1024.0 * 1024));
  return absl::StrFormat("%.1f KiB", b / 1024.0);
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

void PrintStatus(const v1::GetStatusResponse& s) {
  std::printf("model:    %s (%s)\n", s.model().c_str(), s.model_path().c_str());
  std::printf("state:    %s, workers %s\n", s.draining() ? "draining (new requests get 503)" : "serving",
              s.workers_ready() ? "ready" : "NOT ready (restarting)");
  std::printf("gateway:  %s\n", s.listen().c_str());
  std::printf("plan:     %s\n", s.plan_summary().c_str());
  std::printf("phase:    %s\n", s.phase().c_str());
  std::printf("requests: %d queued, %d running, %d slots of %lld tokens\n", s.queue_length(), s.running(),
              s.slot_capacity(), static_cast<long long>(s.context_length()));
  std::printf("steps:    %llu (prefix cache: %llu hits of %llu lookups)\n", static_cast<unsigned long long>(s.steps()),
              static_cast<unsigned long long>(s.prefix_hits()), static_cast<unsigned long long>(s.prefix_lookups()));
  std::printf("uptime:   %.1f s\n", s.uptime_seconds());
  std::printf("devices:\n");
  if (s.devices().empty()) std::printf("  no GPU found or enabled (devices.backends)\n");
  for (const v1::Device& d : s.devices()) {
    std::string memory = Bytes(d.total_bytes());
    if (d.has_free_bytes()) memory = absl::StrCat(Bytes(d.free_bytes()), " free of ", memory);
    std::printf("  %-12s %s, %s, %s%s%s\n", d.id().c_str(), d.name().empty() ? "(unnamed)" : d.name().c_str(),
                memory.c_str(), d.can_compute() ? "usable" : "not usable",
                d.note().empty() ? "" : ": ", d.note().c_str());
  }
  std::printf("workers:\n");
  for (const v1::Worker& w : s.workers()) {
    std::printf("  stage %d  %-8s layers [%d, %d)  restarts %d\n", w.stage(), w.device_id().c_str(), w.first_layer(),
                w.last_layer(), w.restarts());
  }
}

void PrintModel(const v1::Model& m) {
  std::printf("%s  %s\n", m.id().c_str(), m.path().c_str());
  const std::string variants = m.max_variant() == 0 ? "not a Phase Twin file"
                                                    : absl::StrCat("the file carries variants 0..", m.max_variant());
  std::printf("  phase %s (%s), %s of weights, loaded in %.1f s\n", m.phase().c_str(), variants.c_str(),
              Bytes(m.weight_bytes()).c_str(), m.load_seconds());
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (int code = ParseArgs(argc, argv, &options); code >= 0) return code;

  std::shared_ptr<grpc::Channel> channel = grpc::CreateChannel(options.target, grpc::InsecureChannelCredentials());
  std::unique_ptr<v1::Admin::Stub> stub = v1::Admin::NewStub(channel);
  grpc::ClientContext context;
  const bool reloads = options.command == "load" || options.command == "phase" || options.command == "unload";
  const int timeout = options.timeout_seconds > 0 ? options.timeout_seconds : reloads ? kReloadSeconds : kCallSeconds;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout));
  if (!options.token.empty()) context.AddMetadata("authorization", "Bearer " + options.token);

  grpc::Status status;
  std::function<void()> print;
  v1::GetStatusResponse status_response;
  v1::GetPlanResponse plan_response;
  v1::DrainResponse drain_response;
  v1::ShutdownResponse shutdown_response;
  v1::ListModelsResponse models_response;
  v1::LoadModelResponse load_response;
  v1::UnloadModelResponse unload_response;
  v1::SwitchPhaseResponse phase_response;
  v1::PhaseChoice phase;
  if (options.variant) phase.set_variant(*options.variant);
  if (options.budget_mb) phase.set_budget_mb(*options.budget_mb);
  if (options.command == "status") {
    status = stub->GetStatus(&context, v1::GetStatusRequest(), &status_response);
    print = [&] {
      if (options.json) {
        std::printf("%s", ToJson(status_response).c_str());
      } else {
        PrintStatus(status_response);
      }
    };
  } else if (options.command == "plan") {
    status = stub->GetPlan(&context, v1::GetPlanRequest(), &plan_response);
    print = [&] {
      const std::string& out = options.json ? plan_response.json() : plan_response.text();
      std::printf("%s%s", out.c_str(), !out.empty() && out.back() == '\n' ? "" : "\n");
    };
  } else if (options.command == "models") {
    status = stub->ListModels(&context, v1::ListModelsRequest(), &models_response);
    print = [&] {
      if (options.json) return (void)std::printf("%s", ToJson(models_response).c_str());
      if (models_response.models().empty()) std::printf("no model loaded\n");
      for (const v1::Model& m : models_response.models()) PrintModel(m);
    };
  } else if (options.command == "load") {
    v1::LoadModelRequest request;
    request.set_path(options.argument);
    request.set_name(options.name);
    *request.mutable_phase() = phase;
    status = stub->LoadModel(&context, request, &load_response);
    print = [&] {
      if (options.json) return (void)std::printf("%s", ToJson(load_response).c_str());
      PrintModel(load_response.model());
    };
  } else if (options.command == "unload") {
    status = stub->UnloadModel(&context, v1::UnloadModelRequest(), &unload_response);
    print = [&] {
      if (options.json) return (void)std::printf("%s", ToJson(unload_response).c_str());
      std::printf("%s\n", unload_response.unloaded().empty()
                              ? "no model was loaded"
                              : absl::StrCat("unloaded ", unload_response.unloaded()).c_str());
    };
  } else if (options.command == "phase") {
    v1::SwitchPhaseRequest request;
    *request.mutable_phase() = phase;
    status = stub->SwitchPhase(&context, request, &phase_response);
    print = [&] {
      if (options.json) return (void)std::printf("%s", ToJson(phase_response).c_str());
      std::printf("phase %s -> %s\n", phase_response.previous_phase().c_str(), phase_response.model().phase().c_str());
      PrintModel(phase_response.model());
    };
  } else if (options.command == "drain") {
    status = stub->Drain(&context, v1::DrainRequest(), &drain_response);
    print = [&] {
      if (options.json) {
        std::printf("{\"draining\": true, \"already_draining\": %s}\n",
                    drain_response.already_draining() ? "true" : "false");
      } else {
        std::printf("%s\n", drain_response.already_draining()
                                ? "moed was already draining"
                                : "moed is draining: new requests get 503, requests in flight finish");
      }
    };
  } else {
    status = stub->Shutdown(&context, v1::ShutdownRequest(), &shutdown_response);
    print = [&] {
      std::printf("%s\n", options.json ? "{\"shutting_down\": true}" : "moed is shutting down");
    };
  }

  if (!status.ok()) {
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE || status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      std::fprintf(stderr, "moectl: cannot reach moed at %s: %s\n", options.target.c_str(),
                   status.error_message().c_str());
    } else {
      std::fprintf(stderr, "moectl: %s at %s failed: %s\n", options.command.c_str(), options.target.c_str(),
                   status.error_message().c_str());
    }
    return 1;
  }
  print();
  return 0;
}
