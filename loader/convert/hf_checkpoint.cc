// Opening an HF model directory (hf_checkpoint.h): configs, parts, index checks, tensor order.
#include "loader/convert/hf_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::convert {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

absl::StatusOr<Json> ReadJsonFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read '", path.string(), "'"));
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return absl::InvalidArgumentError(absl::StrCat("'", path.string(), "' is not valid JSON"));
  return j;
}

// llama.cpp's get_model_architecture for text models: architectures[0], overridden by the text
// sub-config's own list when it has one.
std::string ModelArchitecture(const Json& config) {
  std::string arch;
  auto first = [](const Json& obj) -> std::string {
    auto it = obj.find("architectures");
    if (it == obj.end() || !it->is_array() || it->empty() || !(*it)[0].is_string()) return "";
    return (*it)[0].get<std::string>();
  };
  arch = first(config);
  auto tc = config.find("text_config");
  if (tc != config.end() && tc->is_object()) {
    const std::string sub = first(*tc);
    if (!sub.empty()) arch = sub;
  }
  return arch;
}

// ModelBase.load_hparams renames the language sub-config of multimodal models to text_config;
// TextModel then merges it over the top level.
Json MergeTextConfig(Json config) {
  for (const char* alias : {"llm_config", "lm_config", "language_config", "lfm"}) {
    if (config.contains(alias)) config["text_config"] = config[alias];
  }
  if (config.contains("thinker_config") && config["thinker_config"].is_object() &&
      config["thinker_config"].contains("text_config")) {
    config["text_config"] = config["thinker_config"]["text_config"];
  }
  Json merged = config;
  auto tc = config.find("text_config");
  if (tc != config.end() && tc->is_object()) {
    for (auto it = tc->begin(); it != tc->end(); ++it) merged[it.key()] = it.value();
  }
  return merged;
}

std::vector<std::string> PartNames(const fs::path& dir, std::string_view prefix,
                                   std::string_view suffix) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (absl::StartsWith(name, Sv(prefix)) && absl::EndsWith(name, Sv(suffix)))
      names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

absl::StatusOr<int64_t> JsonInt(const Json& obj, std::string_view key) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) {
    return absl::NotFoundError(absl::StrCat("config.json has no '", Sv(key), "'"));
  }
  if (!it->is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: '", Sv(key), "' must be an integer, found ", Sv(it->type_name())));
  }
  return it->get<int64_t>();
}

absl::StatusOr<double> JsonNumber(const Json& obj, std::string_view key) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) {
    return absl::NotFoundError(absl::StrCat("config.json has no '", Sv(key), "'"));
  }
  if (!it->is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: '", Sv(key), "' must be a number, found ", Sv(it->type_name())));
  }
  return it->get<double>();
}

std::optional<std::string_view> FindPresentKey(const Json& obj,
                                               std::initializer_list<std::string_view> keys) {
  for (std::string_view k : keys) {
    auto it = obj.find(std::string(k));
    if (it != obj.end() && !it->is_null()) return k;
  }
  return std::nullopt;
}

absl::StatusOr<int64_t> FindJsonInt(const Json& obj, std::initializer_list<std::string_view> keys) {
  std::optional<std::string_view> key = FindPresentKey(obj, keys);
  if (!key) {
    std::vector<std::string> names(keys.begin(), keys.end());
    return absl::NotFoundError(
        absl::StrCat("config.json has none of: ", absl::StrJoin(names, ", ")));
  }
  return JsonInt(obj, *key);
}

absl::StatusOr<std::unique_ptr<HfCheckpoint>> HfCheckpoint::Open(const std::string& dir) {
  const fs::path root(dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat("'", dir, "' is not a model directory"));
  }
  std::unique_ptr<HfCheckpoint> ckpt(new HfCheckpoint());
  ckpt->dir_ = dir;
  // Python's Path(dir).name: the last component once empty and "." components are dropped
  // ("models/x/" -> "x", "." -> ""); the converter derives general.name from it.
  for (absl::string_view part : absl::StrSplit(dir, '/')) {
    if (!part.empty() && part != ".") ckpt->dir_name_ = std::string(part);
  }

  const fs::path config_path = root / "config.json";
  if (!fs::is_regular_file(config_path, ec)) {
    return absl::NotFoundError(absl::StrCat("no config.json in '", dir, "'"));
  }
  ASSIGN_OR_RETURN(ckpt->config_, ReadJsonFile(config_path));
  if (!ckpt->config_.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", config_path.string(), "' is not a JSON object"));
  }
  ckpt->architecture_ = ModelArchitecture(ckpt->config_);
  ckpt->hparams_ = MergeTextConfig(ckpt->config_);

  // The converter silently ignores a missing or unreadable generation_config.json.
  const fs::path gen_path = root / "generation_config.json";
  if (fs::is_regular_file(gen_path, ec)) {
    auto gen = ReadJsonFile(gen_path);
    if (gen.ok() && gen->is_object()) ckpt->generation_config_ = *std::move(gen);
  }

  const fs::path readme_path = root / "README.md";
  if (fs::is_regular_file(readme_path, ec)) {
    std::ifstream in(readme_path, std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    ckpt->readme_ = buf.str();
  }

  std::vector<std::string> parts = PartNames(root, "model", ".safetensors");
  if (parts.empty()) {
    if (!PartNames(root, "pytorch_model", ".bin").empty()) {
      return absl::UnimplementedError(absl::StrCat(
          "'", dir,
          "' holds pytorch_model*.bin weights; only safetensors checkpoints are supported"));
    }
    return absl::NotFoundError(absl::StrCat("no model*.safetensors files in '", dir, "'"));
  }

  // With an index, the parts are the files it names (sorted) and the names must agree exactly.
  std::set<std::string> index_names;
  const fs::path index_path = root / "model.safetensors.index.json";
  bool has_index = false;
  if (fs::is_regular_file(index_path, ec)) {
    has_index = true;
    ASSIGN_OR_RETURN(Json index, ReadJsonFile(index_path));
    auto wm = index.find("weight_map");
    if (!index.is_object() || wm == index.end() || !wm->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("can't load 'weight_map' from '", index_path.string(), "'"));
    }
    std::set<std::string> files;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'", index_path.string(), "': weight_map entry '", it.key(), "' is not a file name"));
      }
      index_names.insert(it.key());
      files.insert(it.value().get<std::string>());
    }
    parts.assign(files.begin(), files.end());
  }

  std::set<std::string> seen;
  for (const std::string& part : parts) {
    for (const fs::path& component : fs::path(part)) {
      if (component == ".." || fs::path(part).is_absolute()) {
        return absl::InvalidArgumentError(
            absl::StrCat("the index names a part outside the model directory: '", part, "'"));
      }
    }
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                     SafetensorsFile::Open((root / part).string()));
    std::vector<const SafetensorsTensor*> sorted;
    for (const SafetensorsTensor& t : file->tensors()) sorted.push_back(&t);
    // Python sorts str by code point; UTF-8 byte order is the same order.
    std::sort(
        sorted.begin(), sorted.end(),
        [](const SafetensorsTensor* a, const SafetensorsTensor* b) { return a->name < b->name; });
    for (const SafetensorsTensor* t : sorted) {
      if (!seen.insert(t->name).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t->name, "' appears in more than one part"));
      }
      ckpt->tensors_.push_back(HfTensorRef{t->name, file.get(), t});
    }
    ckpt->parts_.push_back(std::move(file));
  }

  if (has_index && seen != index_names) {
    std::vector<std::string> missing, extra;
    std::set_difference(index_names.begin(), index_names.end(), seen.begin(), seen.end(),
                        std::back_inserter(missing));
    std::set_difference(seen.begin(), seen.end(), index_names.begin(), index_names.end(),
                        std::back_inserter(extra));
    auto head = [](const std::vector<std::string>& v) {
      std::vector<std::string> h(v.begin(), v.begin() + std::min<size_t>(v.size(), 5));
      return absl::StrCat(absl::StrJoin(h, ", "), v.size() > 5 ? ", ..." : "");
    };
    return absl::InvalidArgumentError(absl::StrCat(
        "model.safetensors.index.json disagrees with the parts: ", missing.size(), " missing (",
        head(missing), "), ", extra.size(), " extra (", head(extra), ")"));
  }
  return ckpt;
}

}  // namespace moed::convert
