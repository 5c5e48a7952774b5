// general.* metadata as gguf-py derives it (hf_metadata.h): id parsing, model card, size label.
#include "loader/convert/hf_metadata.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <regex>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "kernels/base/log.h"
#include "kernels/base/strings.h"
#include "loader/convert/model_card.h"

namespace moed::convert {
namespace {

using gguf::Value;

// Annotations of one part of a model id (metadata.py keeps a set of names per part).
enum PartType : unsigned {
  kBasename = 1,
  kSizeLabel = 2,
  kFinetune = 4,
  kVersion = 8,
  kQuantType = 16,
};

int CountTypes(unsigned t) { return __builtin_popcount(t); }

enum class Pattern { kVersion, kQuantType, kSize, kActive, kFinetune };

// The id-part patterns of metadata.py, matched case-insensitively against the whole part.
bool FullMatch(const std::string& s, Pattern pattern) {
  constexpr auto kFlags = std::regex::ECMAScript | std::regex::icase;
  static const std::regex kVersion(R"((v|iter)?\d+([.]\d+)*)", kFlags);
  static const std::regex kQuantType(R"(i?q\d(_\w)*|b?fp?(16|32))", kFlags);
  static const std::regex kSize(
      R"((([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl))", kFlags);
  static const std::regex kActive(R"(A\d+([._]\d+)?[KMBT][\d]?)", kFlags);
  static const std::regex kFinetune(R"(chat|instruct|vision|lora)", kFlags);
  switch (pattern) {
    case Pattern::kVersion:
      return std::regex_match(s, kVersion);
    case Pattern::kQuantType:
      return std::regex_match(s, kQuantType);
    case Pattern::kSize:
      return std::regex_match(s, kSize);
    case Pattern::kActive:
      return std::regex_match(s, kActive);
    case Pattern::kFinetune:
      return std::regex_match(s, kFinetune);
  }
  return false;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsAlpha(char c) { return IsLower(c) || IsUpper(c); }
char ToUpper(char c) { return IsLower(c) ? static_cast<char>(c - 'a' + 'A') : c; }
char ToLower(char c) { return IsUpper(c) ? static_cast<char>(c - 'A' + 'a') : c; }

std::string Upper(std::string s) {
  for (char& c : s) c = ToUpper(c);
  return s;
}

// Python's str.islower(): some cased character and no upper-case one.
bool PyIsLower(const std::string& s) {
  bool cased = false;
  for (char c : s) {
    if (IsUpper(c)) return false;
    if (IsLower(c)) cased = true;
  }
  return cased;
}

// Python's str.title() for ASCII: a letter is upper-cased after a non-letter, else lower-cased.
std::string PyTitle(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (char& c : out) {
    if (IsAlpha(c)) {
      c = prev_cased ? ToLower(c) : ToUpper(c);
      prev_cased = true;
    } else {
      prev_cased = false;
    }
  }
  return out;
}

// normalize_size_label: "7b1" -> "7.1B", "1_5b" -> "1.5B". nullopt where Python would raise.
std::optional<std::string> NormalizeSizeLabel(std::string label) {
  for (char& c : label) {
    if (c == '_') c = '.';
  }
  if (!label.empty() && IsDigit(label.back())) {
    if (label.size() < 2) return std::nullopt;  // Python: IndexError
    const size_t n = label.size();
    label = label.substr(0, n - 2) + "." + label[n - 1] + label[n - 2];
  }
  if (label.size() > 1 && IsDigit(label[label.size() - 2])) {
    char& last = label.back();
    if (last == 'k' || last == 'm' || last == 'b' || last == 't') last = ToUpper(last);
  }
  return label;
}

// get_size_label_params: float(label[:-1]) * 1000 ** " KMBT".find(label[-1]); nullopt where
// Python's float() raises ValueError.
std::optional<double> SizeLabelParams(const std::string& label) {
  if (label.empty()) return std::nullopt;
  const std::string number = label.substr(0, label.size() - 1);
  static const std::regex kFloat(R"([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)");
  if (!std::regex_match(number, kFloat)) return std::nullopt;
  const double value = std::strtod(number.c_str(), nullptr);
  const size_t idx = std::string_view(" KMBT").find(label.back());
  const int exponent = idx == std::string_view::npos ? -1 : static_cast<int>(idx);
  return value * std::pow(1000.0, exponent);
}

void SetString(gguf::GgufWriter& writer, std::string key, const std::optional<std::string>& value) {
  // gguf-py's add_string skips empty strings.
  if (value && !value->empty()) writer.SetValue(std::move(key), Value::String(*value));
}

// Python's round(): half to even.
double PyRound(double x) { return std::nearbyint(x); }

std::string RoundedNotation(int64_t count) {
  const double n = static_cast<double>(count);
  double scaled;
  char suffix;
  if (n > 1e12) {
    scaled = n * 1e-12;
    suffix = 'T';
  } else if (n > 1e9) {
    scaled = n * 1e-9;
    suffix = 'B';
  } else if (n > 1e6) {
    scaled = n * 1e-6;
    suffix = 'M';
  } else {
    scaled = n * 1e-3;
    suffix = 'K';
  }
  std::string digits = absl::StrFormat("%.0f", PyRound(scaled));
  size_t zeros = 0;
  while (zeros < digits.size() && digits[zeros] == '0') ++zeros;
  const int fix = std::max(2 - static_cast<int>(digits.size() - zeros), 0);
  return absl::StrFormat("%.*f%c", fix, scaled, suffix);
}

}  // namespace

std::string IdToTitle(std::string_view id) {
  std::string s(id);
  for (char& c : s) {
    if (c == '-') c = ' ';
  }
  static const std::regex kKeep(R"(^(v\d+(?:\.\d+)*|\d.*)$)");
  std::vector<std::string> words =
      absl::StrSplit(s, absl::ByAnyChar(" \t\n\r\f\v"), absl::SkipEmpty());
  for (std::string& w : words) {
    if (PyIsLower(w) && !std::regex_search(w, kKeep)) w = PyTitle(w);
  }
  return absl::StrJoin(words, " ");
}

ModelIdComponents GetModelIdComponents(std::string_view model_id_view, int64_t total_params) {
  ModelIdComponents out;
  const std::string model_id(model_id_view);
  if (model_id.find(' ') != std::string::npos) {
    out.full_name = model_id;  // a human sentence, not a hub id
    return out;
  }
  std::string full = model_id;
  const size_t slash = model_id.find('/');
  if (slash != std::string::npos) {
    out.organization = model_id.substr(0, slash);
    full = model_id.substr(slash + 1);
    if (!out.organization->empty() && (*out.organization)[0] == '.') out.organization.reset();
  }
  out.full_name = full;

  std::vector<std::string> parts = absl::StrSplit(full, '-', absl::SkipEmpty());
  std::vector<unsigned> types(parts.size(), 0);

  for (size_t i = 0; i < parts.size(); ++i) {
    std::string part = parts[i];
    if (FullMatch(part, Pattern::kVersion)) {
      types[i] |= kVersion;
    } else if (FullMatch(part, Pattern::kQuantType)) {
      types[i] |= kQuantType;
      parts[i] = Upper(part);
    } else if (i > 0 && FullMatch(part, Pattern::kSize)) {
      std::optional<std::string> normalized = NormalizeSizeLabel(part);
      if (normalized) part = *normalized;
      if (total_params != 0 && normalized) {
        // Everything here mirrors a try-block that gives up on the first ValueError.
        const std::optional<double> label_params = SizeLabelParams(part);
        std::optional<std::string> next_part;
        bool failed = !label_params;
        if (!failed && i + 1 < parts.size()) {
          next_part = NormalizeSizeLabel(parts[i + 1]);
          if (!next_part) failed = true;
        }
        bool followed_by_active = false;
        if (!failed && next_part && FullMatch(*next_part, Pattern::kActive)) {
          const std::optional<double> active = SizeLabelParams(next_part->substr(1));
          if (!active) {
            failed = true;
          } else {
            const double total = std::fabs(static_cast<double>(total_params));
            followed_by_active =
                std::fabs(*active - total) <= static_cast<double>(7 * std::llabs(total_params) / 8);
          }
        }
        if (!failed && !followed_by_active) {
          const double lp = *label_params;
          const bool too_small =
              total_params < 0 && lp < static_cast<double>(std::llabs(total_params) / 8);
          const bool far_off =
              total_params > 0 && std::fabs(lp - static_cast<double>(total_params)) >
                                      static_cast<double>(7 * total_params / 8);
          if (too_small || far_off) {
            types[i] |= kFinetune;  // likely a context length such as "128k"
            part.back() = ToLower(part.back());
          }
        }
      }
      if (types[i] == 0) types[i] |= kSizeLabel;
      parts[i] = part;
    } else if (i > 0 && FullMatch(part, Pattern::kFinetune)) {
      if (total_params < 0 && Upper(part) == "LORA") {
        types[i] |= kQuantType;
      } else {
        types[i] |= kFinetune;
      }
    }
  }

  // Word-based size labels ("small") are ignored when a number-based one is present.
  bool numeric_size = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    if ((types[i] & kSizeLabel) == 0) continue;
    for (char c : parts[i]) numeric_size |= IsDigit(c);
  }
  if (numeric_size) {
    for (size_t i = 0; i < parts.size(); ++i) {
      if ((types[i] & kSizeLabel) == 0) continue;
      bool all_alpha = true;
      for (char c : parts[i]) all_alpha &= IsAlpha(c);
      if (all_alpha) types[i] &= ~kSizeLabel;
    }
  }

  bool at_start = true;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (at_start && ((types[i] == 0 && IsAlpha(parts[i][0])) || (types[i] & kVersion))) {
      types[i] |= kBasename;
    } else {
      at_start = false;
      if (types[i] == 0) types[i] |= kFinetune;
    }
  }
  for (size_t i = parts.size(); i-- > 0;) {
    if ((types[i] & kBasename) && CountTypes(types[i]) > 1) {
      types[i] &= ~kBasename;
    } else {
      break;
    }
  }

  auto join = [&](auto keep, bool dedupe) -> std::optional<std::string> {
    std::vector<std::string> picked;
    for (size_t i = 0; i < parts.size(); ++i) {
      if (!keep(types[i])) continue;
      if (dedupe && std::find(picked.begin(), picked.end(), parts[i]) != picked.end()) continue;
      picked.push_back(parts[i]);
    }
    if (picked.empty()) return std::nullopt;
    return absl::StrJoin(picked, "-");
  };
  out.basename = join([](unsigned t) { return (t & kBasename) != 0; }, false);
  out.size_label = join([](unsigned t) { return (t & kSizeLabel) != 0; }, true);
  out.finetune = join([](unsigned t) { return (t & kFinetune) != 0; }, false);
  out.version = join([](unsigned t) { return (t & kVersion) != 0 && (t & kBasename) == 0; }, false);
  if (!out.size_label && !out.finetune && !out.version) out.basename.reset();  // too ambiguous
  return out;
}

std::string SizeLabel(const ParameterCounts& c) {
  if (c.expert_count > 0) {
    return absl::StrCat(c.expert_count, "x",
                        RoundedNotation(std::llabs(c.shared) + std::llabs(c.expert)));
  }
  return RoundedNotation(std::llabs(c.total));
}

namespace {

struct SourceEntry {  // a base model or a dataset
  std::optional<std::string> name, author, version, organization, description, url, doi, uuid,
      repo_url;
};

// What gguf-py's Metadata collects from the model card, config.json and the directory name.
struct Collected {
  std::optional<std::string> name, author, version, organization, finetune, basename, description,
      size_label;
  std::optional<std::string> source_url, source_doi, source_uuid, source_repo_url;
  std::optional<std::string> license, license_name, license_link;
  std::optional<std::vector<SourceEntry>> base_models, datasets;
  std::optional<std::vector<std::string>> tags, languages;
};

// A hub id or URL as a base-model / dataset entry (apply_metadata_heuristic).
SourceEntry EntryFromId(const std::string& id, int64_t total_params) {
  SourceEntry e;
  auto fill = [&](const ModelIdComponents& c) {
    if (c.full_name) e.name = IdToTitle(*c.full_name);
    if (c.organization) e.organization = IdToTitle(*c.organization);
    if (c.version) e.version = c.version;
  };
  if (absl::StartsWith(id, "http://") || absl::StartsWith(id, "https://") ||
      absl::StartsWith(id, "ssh://")) {
    e.repo_url = id;
    static const std::regex kHub(R"(^https?://huggingface.co/([^/]+/[^/]+)$)");
    std::smatch m;
    if (absl::StrContains(id, "huggingface.co") && std::regex_match(id, m, kHub)) {
      fill(GetModelIdComponents(m[1].str(), total_params));
    }
    return e;
  }
  const ModelIdComponents c = GetModelIdComponents(id, total_params);
  fill(c);
  if (c.organization && c.full_name)
    e.repo_url = absl::StrCat("https://huggingface.co/", *c.organization, "/", *c.full_name);
  return e;
}

void ApplyModelCard(const ModelCard& card, int64_t total_params, Collected& md) {
  auto use = [&](std::optional<std::string>& field, const char* key) {
    auto it = card.find(key);
    if (field || it == card.end()) return;
    if (it->second.kind == CardValue::Kind::kString) {
      field = it->second.str;
    } else if (it->second.kind != CardValue::Kind::kNull) {
      MOED_LOG(WARNING) << "README.md: ignoring '" << key << "', which is not a plain string";
    }
  };
  // llama.cpp's own card keys, then their "model_" forms, then the Hugging Face ones.
  use(md.name, "name");
  use(md.author, "author");
  use(md.version, "version");
  use(md.organization, "organization");
  use(md.description, "description");
  use(md.finetune, "finetune");
  use(md.basename, "basename");
  use(md.size_label, "size_label");
  use(md.source_url, "url");
  use(md.source_doi, "doi");
  use(md.source_uuid, "uuid");
  use(md.source_repo_url, "repo_url");
  use(md.name, "model_name");
  use(md.author, "model_author");
  use(md.version, "model_version");
  use(md.organization, "model_organization");
  use(md.description, "model_description");
  use(md.finetune, "model_finetune");
  use(md.basename, "model_basename");
  use(md.size_label, "model_size_label");
  use(md.source_url, "model_url");
  use(md.source_doi, "model_doi");
  use(md.source_uuid, "model_uuid");
  use(md.source_repo_url, "model_repo_url");
  use(md.name, "model_name");
  use(md.author, "model_creator");
  use(md.basename, "model_type");

  // base_model / datasets: a hub id, a URL, or a list of them.
  auto sources = [&](std::optional<std::vector<SourceEntry>>& field,
                     std::initializer_list<const char*> keys) {
    const CardValue* value = nullptr;
    for (const char* k : keys) {
      if (auto it = card.find(k); it != card.end()) {
        value = &it->second;
        break;
      }
    }
    if (value == nullptr) return;
    if (!field) field.emplace();
    std::vector<std::string> ids;
    if (value->kind == CardValue::Kind::kString) {
      ids.push_back(value->str);
    } else if (value->kind == CardValue::Kind::kList) {
      ids = value->list;
    } else if (value->kind == CardValue::Kind::kOther) {
      MOED_LOG(WARNING) << "README.md: ignoring '" << *keys.begin()
                        << "' entries that are not plain ids";
    }
    for (const std::string& id : ids) field->push_back(EntryFromId(id, total_params));
  };
  sources(md.base_models, {"base_model", "base_models", "base_model_sources"});
  sources(md.datasets, {"datasets", "dataset", "dataset_sources"});

  if (auto it = card.find("license"); it != card.end() && !md.license) {
    if (it->second.kind == CardValue::Kind::kString) {
      md.license = it->second.str;
    } else if (it->second.kind == CardValue::Kind::kList) {
      md.license = absl::StrJoin(it->second.list, ",");
    }
  }
  use(md.license_name, "license_name");
  use(md.license_link, "license_link");

  auto append = [&](std::optional<std::vector<std::string>>& field, const char* key) {
    auto it = card.find(key);
    if (it == card.end() || it->second.kind == CardValue::Kind::kNull) return;
    if (!field) field.emplace();
    if (it->second.kind == CardValue::Kind::kString) {
      field->push_back(it->second.str);
    } else if (it->second.kind == CardValue::Kind::kList) {
      field->insert(field->end(), it->second.list.begin(), it->second.list.end());
    } else {
      MOED_LOG(WARNING) << "README.md: ignoring '" << key << "', which is not a list of strings";
    }
  };
  append(md.tags, "tags");
  append(md.tags, "pipeline_tag");
  append(md.languages, "languages");
  append(md.languages, "language");
}

void ApplyModelId(const ModelIdComponents& c, Collected& md) {
  if (!md.name && c.full_name) md.name = IdToTitle(*c.full_name);
  if (!md.organization && c.organization) md.organization = IdToTitle(*c.organization);
  if (!md.basename && c.basename) md.basename = c.basename;
  if (!md.finetune && c.finetune) md.finetune = c.finetune;
  if (!md.version && c.version) md.version = c.version;
  if (!md.size_label && c.size_label) md.size_label = c.size_label;
}

void SetEntries(gguf::GgufWriter& writer, const char* kind,
                const std::optional<std::vector<SourceEntry>>& entries) {
  if (!entries) return;
  writer.SetValue(absl::StrCat("general.", kind, ".count"),
                  Value::Uint32(static_cast<uint32_t>(entries->size())));
  for (size_t i = 0; i < entries->size(); ++i) {
    const SourceEntry& e = (*entries)[i];
    const std::string p = absl::StrCat("general.", kind, ".", i, ".");
    SetString(writer, p + "name", e.name);
    SetString(writer, p + "author", e.author);
    SetString(writer, p + "version", e.version);
    SetString(writer, p + "organization", e.organization);
    SetString(writer, p + "description", e.description);
    SetString(writer, p + "url", e.url);
    SetString(writer, p + "doi", e.doi);
    SetString(writer, p + "uuid", e.uuid);
    SetString(writer, p + "repo_url", e.repo_url);
  }
}

void SetStrings(gguf::GgufWriter& writer, const char* key,
                const std::optional<std::vector<std::string>>& v) {
  if (v && !v->empty())
    writer.SetValue(key, Value::StringArray(*v));  // add_array skips empty lists
}

}  // namespace

void SetGeneralMetadata(const HfCheckpoint& checkpoint, const ParameterCounts& counts,
                        gguf::GgufWriter& writer) {
  writer.SetValue("general.type", Value::String("model"));

  // generation_config.json: only llama.cpp's own key names are read, as the converter does.
  const nlohmann::json& gen = checkpoint.generation_config();
  if (gen.is_object()) {
    struct SamplingKey {
      const char* json;
      const char* gguf;
      bool integer;
    };
    static constexpr SamplingKey kSampling[] = {
        {"top_k", "general.sampling.top_k", true},
        {"top_p", "general.sampling.top_p", false},
        {"min_p", "general.sampling.min_p", false},
        {"xtc_probability", "general.sampling.xtc_probability", false},
        {"xtc_threshold", "general.sampling.xtc_threshold", false},
        {"temperature", "general.sampling.temp", false},
        {"penalty_last_n", "general.sampling.penalty_last_n", true},
        {"penalty_repeat", "general.sampling.penalty_repeat", false},
        {"mirostat", "general.sampling.mirostat", true},
        {"mirostat_tau", "general.sampling.mirostat_tau", false},
        {"mirostat_eta", "general.sampling.mirostat_eta", false},
    };
    auto seq = gen.find("sequence");
    if (seq != gen.end() && seq->is_string()) {
      SetString(writer, "general.sampling.sequence", seq->get<std::string>());
    }
    for (const SamplingKey& k : kSampling) {
      auto it = gen.find(k.json);
      if (it == gen.end() || it->is_null()) continue;
      if (k.integer && it->is_number_integer()) {
        writer.SetValue(k.gguf, Value::Int32(static_cast<int32_t>(it->get<int64_t>())));
      } else if (!k.integer && it->is_number()) {
        writer.SetValue(k.gguf, Value::Float32(static_cast<float>(it->get<double>())));
      } else {
        MOED_LOG(WARNING) << "generation_config.json: ignoring '" << k.json << "' of type "
                          << it->type_name();
      }
    }
  }

  // Metadata.load: model card first, then config.json's _name_or_path (when it is a hub id rather
  // than a local path), then the directory name; each fills only what is still unknown.
  Collected md;
  ApplyModelCard(ParseModelCard(checkpoint.readme()), counts.total, md);
  auto name_or_path = checkpoint.config().find("_name_or_path");
  if (name_or_path != checkpoint.config().end() && name_or_path->is_string()) {
    const std::string id = name_or_path->get<std::string>();
    if (std::count(id.begin(), id.end(), '/') <= 1)
      ApplyModelId(GetModelIdComponents(id, counts.total), md);
  }
  ApplyModelId(GetModelIdComponents(checkpoint.dir_name(), counts.total), md);
  if (!md.name) md.name = checkpoint.dir_name();
  if (!md.size_label && counts.total > 0) md.size_label = SizeLabel(counts);

  // Metadata.set_gguf_meta_model, in its order.
  SetString(writer, "general.name", md.name);
  SetString(writer, "general.author", md.author);
  SetString(writer, "general.version", md.version);
  SetString(writer, "general.organization", md.organization);
  SetString(writer, "general.finetune", md.finetune);
  SetString(writer, "general.basename", md.basename);
  SetString(writer, "general.description", md.description);
  SetString(writer, "general.size_label", md.size_label);
  SetString(writer, "general.license", md.license);
  SetString(writer, "general.license.name", md.license_name);
  SetString(writer, "general.license.link", md.license_link);
  SetString(writer, "general.source.url", md.source_url);
  SetString(writer, "general.source.doi", md.source_doi);
  SetString(writer, "general.source.uuid", md.source_uuid);
  SetString(writer, "general.source.repo_url", md.source_repo_url);
  SetEntries(writer, "base_model", md.base_models);
  SetEntries(writer, "dataset", md.datasets);
  SetStrings(writer, "general.tags", md.tags);
  SetStrings(writer, "general.languages", md.languages);
}

}  // namespace moed::convert
