#include "loader/gguf/gguf_value.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/base/strings.h"

namespace moed::gguf {
namespace {

template <typename T>
Value Scalar(ValueType type, T v) {
  std::string raw(sizeof(T), '\0');
  std::memcpy(raw.data(), &v, sizeof(T));
  return Value::FromRaw(type, /*is_array=*/false, std::move(raw), 1);
}

template <typename T>
Value Array(ValueType type, std::span<const T> v) {
  std::string raw(v.size() * sizeof(T), '\0');
  if (!v.empty()) std::memcpy(raw.data(), v.data(), raw.size());
  return Value::FromRaw(type, /*is_array=*/true, std::move(raw), v.size());
}

template <typename T>
T Load(const std::string& raw, uint64_t i) {
  T v;
  std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
  return v;
}

bool IsInteger(ValueType t) {
  switch (t) {
    case ValueType::kUint8: case ValueType::kInt8: case ValueType::kUint16: case ValueType::kInt16:
    case ValueType::kUint32: case ValueType::kInt32: case ValueType::kUint64: case ValueType::kInt64:
    case ValueType::kBool:
      return true;
    default:
      return false;
  }
}

absl::Status TypeError(std::string_view expected, ValueType found, bool is_array) {
  return absl::InvalidArgumentError(absl::StrCat("expected ", Sv(expected), ", found ",
                                                 is_array ? "ARRAY of " : "", Sv(ValueTypeName(found))));
}

}  // namespace

std::string_view ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kUint8: return "UINT8";
    case ValueType::kInt8: return "INT8";
    case ValueType::kUint16: return "UINT16";
    case ValueType::kInt16: return "INT16";
    case ValueType::kUint32: return "UINT32";
    case ValueType::kInt32: return "INT32";
    case ValueType::kFloat32: return "FLOAT32";
    case ValueType::kBool: return "BOOL";
    case ValueType::kString: return "STRING";
    case ValueType::kArray: return "ARRAY";
    case ValueType::kUint64: return "UINT64";
    case ValueType::kInt64: return "INT64";
    case ValueType::kFloat64: return "FLOAT64";
  }
  return "INVALID";
}

size_t ValueTypeSize(ValueType type) {
  switch (type) {
    case ValueType::kUint8: case ValueType::kInt8: case ValueType::kBool: return 1;
    case ValueType::kUint16: case ValueType::kInt16: return 2;
    case ValueType::kUint32: case ValueType::kInt32: case ValueType::kFloat32: return 4;
    case ValueType::kUint64: case ValueType::kInt64: case ValueType::kFloat64: return 8;
    case ValueType::kString: case ValueType::kArray: return 0;
  }
  return 0;
}

bool IsValidValueType(uint32_t id) { return id <= static_cast<uint32_t>(ValueType::kFloat64); }

Value Value::Uint8(uint8_t v) { return Scalar(ValueType::kUint8, v); }
Value Value::Int8(int8_t v) { return Scalar(ValueType::kInt8, v); }
Value Value::Uint16(uint16_t v) { return Scalar(ValueType::kUint16, v); }
Value Value::Int16(int16_t v) { return Scalar(ValueType::kInt16, v); }
Value Value::Uint32(uint32_t v) { return Scalar(ValueType::kUint32, v); }
Value Value::Int32(int32_t v) { return Scalar(ValueType::kInt32, v); }
Value Value::Uint64(uint64_t v) { return Scalar(ValueType::kUint64, v); }
Value Value::Int64(int64_t v) { return Scalar(ValueType::kInt64, v); }
Value Value::Float32(float v) { return Scalar(ValueType::kFloat32, v); }
Value Value::Float64(double v) { return Scalar(ValueType::kFloat64, v); }
Value Value::Bool(bool v) { return Scalar(ValueType::kBool, static_cast<uint8_t>(v ? 1 : 0)); }

Value Value::String(std::string v) {
  Value out;
  out.element_type_ = ValueType::kString;
  out.count_ = 1;
  out.strings_.push_back(std::move(v));
  return out;
}

Value Value::StringArray(std::vector<std::string> v) {
  Value out;
  out.element_type_ = ValueType::kString;
  out.is_array_ = true;
  out.count_ = v.size();
  out.strings_ = std::move(v);
  return out;
}

Value Value::Int32Array(std::span<const int32_t> v) { return Array(ValueType::kInt32, v); }
Value Value::Uint32Array(std::span<const uint32_t> v) { return Array(ValueType::kUint32, v); }
Value Value::Float32Array(std::span<const float> v) { return Array(ValueType::kFloat32, v); }

Value Value::BoolArray(std::span<const bool> v) {
  std::string raw;
  raw.reserve(v.size());
  for (bool b : v) raw.push_back(b ? 1 : 0);
  return FromRaw(ValueType::kBool, /*is_array=*/true, std::move(raw), v.size());
}

Value Value::FromRaw(ValueType type, bool is_array, std::string bytes, uint64_t count) {
  Value out;
  out.element_type_ = type;
  out.is_array_ = is_array;
  out.count_ = count;
  out.raw_ = std::move(bytes);
  return out;
}

absl::StatusOr<int64_t> Value::GetIntAt(uint64_t i) const {
  if (i >= count_) return absl::OutOfRangeError(absl::StrCat("index ", i, " >= size ", count_));
  switch (element_type_) {
    case ValueType::kUint8: case ValueType::kBool: return Load<uint8_t>(raw_, i);
    case ValueType::kInt8: return Load<int8_t>(raw_, i);
    case ValueType::kUint16: return Load<uint16_t>(raw_, i);
    case ValueType::kInt16: return Load<int16_t>(raw_, i);
    case ValueType::kUint32: return Load<uint32_t>(raw_, i);
    case ValueType::kInt32: return Load<int32_t>(raw_, i);
    case ValueType::kInt64: return Load<int64_t>(raw_, i);
    case ValueType::kUint64: {
      const uint64_t v = Load<uint64_t>(raw_, i);
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::OutOfRangeError(absl::StrCat("value ", v, " does not fit int64"));
      }
      return static_cast<int64_t>(v);
    }
    default:
      return TypeError("an integer", element_type_, is_array_);
  }
}

absl::StatusOr<double> Value::GetFloatAt(uint64_t i) const {
  if (i >= count_) return absl::OutOfRangeError(absl::StrCat("index ", i, " >= size ", count_));
  if (element_type_ == ValueType::kFloat32) return Load<float>(raw_, i);
  if (element_type_ == ValueType::kFloat64) return Load<double>(raw_, i);
  return TypeError("a float", element_type_, is_array_);
}

absl::StatusOr<uint64_t> Value::GetUint() const {
  if (is_array_ || !IsInteger(element_type_)) return TypeError("an unsigned integer", element_type_, is_array_);
  if (element_type_ == ValueType::kUint64) return Load<uint64_t>(raw_, 0);
  auto v = GetIntAt(0);
  if (!v.ok()) return v.status();
  if (*v < 0) return absl::InvalidArgumentError(absl::StrCat("expected a non-negative integer, found ", *v));
  return static_cast<uint64_t>(*v);
}

absl::StatusOr<int64_t> Value::GetInt() const {
  if (is_array_) return TypeError("an integer", element_type_, is_array_);
  return GetIntAt(0);
}

absl::StatusOr<double> Value::GetFloat() const {
  if (is_array_) return TypeError("a float", element_type_, is_array_);
  return GetFloatAt(0);
}

absl::StatusOr<bool> Value::GetBool() const {
  if (is_array_ || element_type_ != ValueType::kBool) return TypeError("BOOL", element_type_, is_array_);
  return Load<uint8_t>(raw_, 0) != 0;
}

absl::StatusOr<std::string_view> Value::GetString() const {
  if (is_array_ || element_type_ != ValueType::kString) return TypeError("STRING", element_type_, is_array_);
  return std::string_view(strings_[0]);
}

absl::StatusOr<std::span<const std::string>> Value::GetStrings() const {
  if (!is_array_ || element_type_ != ValueType::kString) {
    return TypeError("ARRAY of STRING", element_type_, is_array_);
  }
  return std::span<const std::string>(strings_);
}

std::string Value::DebugString(size_t max_elements) const {
  auto element = [&](uint64_t i) -> std::string {
    if (element_type_ == ValueType::kString) {
      std::string s = strings_[i];
      if (s.size() > 60) s = s.substr(0, 57) + "...";
      return absl::StrCat("\"", s, "\"");
    }
    if (element_type_ == ValueType::kFloat32 || element_type_ == ValueType::kFloat64) {
      return absl::StrCat(*GetFloatAt(i));
    }
    if (element_type_ == ValueType::kUint64) return absl::StrCat(Load<uint64_t>(raw_, i));
    if (element_type_ == ValueType::kBool) return Load<uint8_t>(raw_, i) ? "true" : "false";
    return absl::StrCat(*GetIntAt(i));
  };
  if (!is_array_) return element(0);
  std::string out = absl::StrCat("[", Sv(ValueTypeName(element_type_)), " x ", count_, ":");
  for (uint64_t i = 0; i < count_ && i < max_elements; ++i) absl::StrAppend(&out, i ? ", " : " ", element(i));
  if (count_ > max_elements) absl::StrAppend(&out, ", ...");
  return out + "]";
}

}  // namespace moed::gguf
