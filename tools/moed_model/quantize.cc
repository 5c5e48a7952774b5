// moed-model quantize: rewrites a GGUF with its weight matrices in another block format, using
// llama-quantize's per-tensor rules so that mixed-bit files (2/3/4/8-bit per tensor) can be made:
// norms, the router, conv taps and 1-D tensors stay F32; --tensor-type REGEX=TYPE overrides the
// type of every tensor whose name the regex matches (first matching rule wins, searched like
// llama-quantize's std::regex_search); a matrix whose rows do not fill whole blocks of the chosen
// type falls back to Q8_0, then F16.
#include <algorithm>
#include <cstdio>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "kernels/quants/dequantize.h"
#include "kernels/quants/quantize.h"
#include "loader/gguf/gguf_file.h"
#include "loader/gguf/gguf_writer.h"
#include "tools/moed_model/subcommand.h"

namespace moed::tool {
namespace {

struct TypeRule {
  std::string pattern;
  std::regex regex;
  GgmlType type;
};

// Tensors llama-quantize never quantizes.
bool StaysF32(const gguf::TensorInfo& t) {
  if (gguf::CountDims(std::span<const int64_t>(t.ne.data(), gguf::kMaxDims)) == 1) return true;
  return absl::EndsWith(t.name, "_norm.weight") || absl::StrContains(t.name, "ffn_gate_inp.weight") ||
         absl::StrContains(t.name, "ssm_conv1d.weight") || t.name == "ssm_a" || absl::EndsWith(t.name, ".ssm_a");
}

// llama.cpp's general.file_type ("mostly X") for the main type.
uint32_t FileTypeFor(GgmlType t) {
  switch (t) {
    case GgmlType::kF32: return 0;
    case GgmlType::kF16: return 1;
    case GgmlType::kQ4_0: return 2;
    case GgmlType::kQ4_1: return 3;
    case GgmlType::kQ8_0: return 7;
    case GgmlType::kQ5_0: return 8;
    case GgmlType::kQ5_1: return 9;
    case GgmlType::kQ2_K: return 10;
    case GgmlType::kQ3_K: return 12;
    case GgmlType::kQ4_K: return 15;
    case GgmlType::kQ5_K: return 17;
    case GgmlType::kQ6_K: return 18;
    case GgmlType::kIq4Xs: return 30;
    case GgmlType::kBf16: return 32;
    case GgmlType::kMxfp4: return 38;
    default: return 1024;  // "guessed"
  }
}

absl::StatusOr<GgmlType> ChooseType(const gguf::TensorInfo& t, GgmlType main_type, const std::vector<TypeRule>& rules) {
  GgmlType want = StaysF32(t) ? GgmlType::kF32 : main_type;
  for (const TypeRule& r : rules) {
    if (std::regex_search(t.name, r.regex)) {
      want = r.type;
      break;
    }
  }
  for (GgmlType candidate : {want, GgmlType::kQ8_0, GgmlType::kF16, GgmlType::kF32}) {
    if (t.ne[0] % FindGgmlType(candidate)->block_size == 0 && HasQuantizer(candidate)) {
      if (candidate != want) {
        MOED_LOG(WARNING) << t.name << ": rows of " << t.ne[0] << " do not fill " << GgmlTypeName(want)
                          << " blocks; using " << GgmlTypeName(candidate);
      }
      return candidate;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("no quantizer for tensor '", t.name, "'"));
}

// Converts every row of `src` (any dequantizable type) to `type`, rows split across threads.
absl::Status ConvertRows(const gguf::TensorInfo& t, std::span<const uint8_t> src, GgmlType type,
                         std::span<uint8_t> out, int threads) {
  const int64_t rows = t.n_elements() / t.ne[0];
  const uint64_t in_row = t.row_bytes();
  const uint64_t out_row = static_cast<uint64_t>(RowBytes(type, t.ne[0]));
  std::vector<absl::Status> status(threads);
  std::vector<std::thread> pool;
  for (int w = 0; w < threads; ++w) {
    pool.emplace_back([&, w] {
      std::vector<float> row(t.ne[0]);
      for (int64_t r = w; r < rows && status[w].ok(); r += threads) {
        status[w] = DequantizeRow(t.type, src.data() + r * in_row, row.data(), t.ne[0]);
        if (status[w].ok()) status[w] = QuantizeRow(type, row.data(), out.data() + r * out_row, t.ne[0]);
      }
    });
  }
  for (std::thread& th : pool) th.join();
  for (const absl::Status& s : status) RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

absl::Status RunQuantize(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"type", "tensor-type", "threads"}));
  if (args.positional().size() != 2) return absl::InvalidArgumentError("expected IN.gguf OUT.gguf");
  ASSIGN_OR_RETURN(std::string type_name, args.Require("type"));
  ASSIGN_OR_RETURN(GgmlType main_type, GgmlTypeFromName(type_name));
  if (!HasQuantizer(main_type)) {
    return absl::InvalidArgumentError(absl::StrCat("moed has no quantizer for ", type_name));
  }
  std::vector<TypeRule> rules;
  for (const std::string& spec : args.GetAll("tensor-type")) {
    const size_t eq = spec.rfind('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--tensor-type expects REGEX=TYPE, got '", spec, "'"));
    }
    ASSIGN_OR_RETURN(GgmlType t, GgmlTypeFromName(spec.substr(eq + 1)));
    try {
      rules.push_back({spec.substr(0, eq), std::regex(spec.substr(0, eq)), t});
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(absl::StrCat("--tensor-type '", spec, "': bad regex: ", e.what()));
    }
  }
  ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads", std::max(1u, std::thread::hardware_concurrency())));
  if (threads < 1 || threads > 256) return absl::InvalidArgumentError("--threads must be in 1..256");

  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> in, gguf::GgufFile::Open(args.positional()[0]));
  gguf::GgufWriter writer;
  writer.CopyMetadataFrom(*in);
  writer.SetValue("general.file_type", gguf::Value::Uint32(FileTypeFor(main_type)));
  writer.SetValue("general.quantization_version", gguf::Value::Uint32(2));
  for (const gguf::TensorInfo& t : in->tensors()) {
    if (!FindGgmlType(t.type)->can_dequantize) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' has type ", Sv(GgmlTypeName(t.type)),
                                                     ", which moed cannot read"));
    }
    ASSIGN_OR_RETURN(GgmlType type, ChooseType(t, main_type, rules));
    const std::span<const int64_t> ne(t.ne.data(), t.n_dims);
    const std::span<const uint8_t> src = in->TensorData(t);
    if (type == t.type) {
      RETURN_IF_ERROR(writer.AddTensorBytes(t.name, t.type, ne, src));
      continue;
    }
    RETURN_IF_ERROR(writer.AddTensor(t.name, type, ne, [&t, src, type, threads](std::span<uint8_t> out) {
      return ConvertRows(t, src, type, out, static_cast<int>(threads));
    }));
  }
  RETURN_IF_ERROR(writer.WriteFile(args.positional()[1]));
  std::printf("wrote %s\n", args.positional()[1].c_str());
  return absl::OkStatus();
}

MOED_SUBCOMMAND(kQuantize, {
    .name = "quantize",
    .usage = "IN.gguf OUT.gguf --type TYPE [--tensor-type REGEX=TYPE ...] [--threads N]",
    .help = "Quantize a GGUF with llama-quantize's per-tensor rules (mixed types via --tensor-type).",
    .bool_flags = {},
    .run = RunQuantize,
});

}  // namespace
}  // namespace moed::tool
