// The config's entry points: read a file, parse, resolve relative paths, validate. Parsing lives in
// config_parse.cc, the checks in config_validate.cc, the YAML output in config_dump.cc.
#include "configs/config.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "configs/config_internal.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::config {
namespace {

constexpr uint64_t kMaxConfigBytes = 1 << 20;

absl::StatusOr<std::string> ReadConfigText(const std::string& path) {
  auto failed = [&](int err) {
    std::string message = absl::StrCat("cannot read config '", path, "': ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == EACCES) return absl::PermissionDeniedError(message);
    return absl::InvalidArgumentError(message);
  };
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return failed(errno);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("config '", path, "' is not a regular file"));
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("config '", path, "' is ", st.st_size, " bytes; a config is at most 1MiB"));
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return failed(errno);
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t n = std::fread(text.data(), 1, text.size(), f);
  int err = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (err != 0) return failed(err);
  text.resize(n);
  return text;
}

void ResolveAgainst(const std::filesystem::path& dir, std::string* field) {
  if (field->empty() || (*field)[0] == '/') return;
  *field = (dir / *field).lexically_normal().string();
}

// Every file name a config holds, relative to the config's directory.
void ResolveRelativePaths(const std::filesystem::path& dir, Config* c) {
  ResolveAgainst(dir, &c->model.path);
  ResolveAgainst(dir, &c->model.chat_template_file);
  ResolveAgainst(dir, &c->server.api_key_file);
  ResolveAgainst(dir, &c->admin.socket);
  ResolveAgainst(dir, &c->admin.token_file);
  ResolveAgainst(dir, &c->workers.binary);
}

}  // namespace

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadConfigText(path));
  ASSIGN_OR_RETURN(internal::ParsedConfig parsed, internal::ParseYaml(text, path));
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(path, ec).parent_path();
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("config '", path, "': cannot make the path absolute: ", ec.message()));
  }
  ResolveRelativePaths(dir, &parsed.config);
  RETURN_IF_ERROR(internal::Locate(Validate(parsed.config), path, parsed.locations));
  return std::move(parsed.config);
}

absl::StatusOr<Config> ParseConfig(std::string_view yaml, std::string_view source_name) {
  ASSIGN_OR_RETURN(internal::ParsedConfig parsed, internal::ParseYaml(yaml, source_name));
  RETURN_IF_ERROR(internal::Locate(Validate(parsed.config), source_name, parsed.locations));
  return std::move(parsed.config);
}

std::string_view ReasoningFormatName(ReasoningFormat format) {
  switch (format) {
    case ReasoningFormat::kSeparate: return "separate";
    case ReasoningFormat::kRaw: return "raw";
  }
  return "?";
}

std::string_view ActivationLinkName(ActivationLink link) {
  switch (link) {
    case ActivationLink::kAuto: return "auto";
    case ActivationLink::kSocket: return "socket";
    case ActivationLink::kNccl: return "nccl";
  }
  return "?";
}

std::string_view BackendName(Backend backend) {
  switch (backend) {
    case Backend::kCpu: return "cpu";
    case Backend::kCuda: return "cuda";
    case Backend::kLevelZero: return "level_zero";
  }
  return "?";
}

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "?";
}

}  // namespace moed::config
