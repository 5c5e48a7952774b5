// A GGUF metadata value: one scalar of any GGUF value type, or an array of one element type.
// Values are decoded from the file once, at open time; numbers keep their exact stored type so
// that a writer reproduces them byte for byte.
#ifndef MOED_LOADER_GGUF_GGUF_VALUE_H_
#define MOED_LOADER_GGUF_GGUF_VALUE_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace moed::gguf {

enum class ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

std::string_view ValueTypeName(ValueType type);
// Bytes of one element of a fixed-size type; 0 for kString and kArray.
size_t ValueTypeSize(ValueType type);
bool IsValidValueType(uint32_t id);

class Value {
 public:
  Value() = default;

  // Scalars.
  static Value Uint8(uint8_t v);
  static Value Int8(int8_t v);
  static Value Uint16(uint16_t v);
  static Value Int16(int16_t v);
  static Value Uint32(uint32_t v);
  static Value Int32(int32_t v);
  static Value Uint64(uint64_t v);
  static Value Int64(int64_t v);
  static Value Float32(float v);
  static Value Float64(double v);
  static Value Bool(bool v);
  static Value String(std::string v);
  // Arrays.
  static Value StringArray(std::vector<std::string> v);
  static Value Int32Array(std::span<const int32_t> v);
  static Value Uint32Array(std::span<const uint32_t> v);
  static Value Float32Array(std::span<const float> v);
  static Value BoolArray(std::span<const bool> v);
  // A scalar (count 1, is_array false) or array of a fixed-size type from its little-endian bytes.
  // REQUIRES: bytes.size() == count * ValueTypeSize(type).
  static Value FromRaw(ValueType type, bool is_array, std::string bytes, uint64_t count);

  // kArray for arrays; the element type is element_type().
  ValueType type() const { return is_array_ ? ValueType::kArray : element_type_; }
  ValueType element_type() const { return element_type_; }
  bool is_array() const { return is_array_; }
  // 1 for scalars.
  uint64_t size() const { return count_; }

  // Scalar accessors. They convert between widths where the value fits; otherwise they return
  // InvalidArgument naming the stored type ("expected an unsigned integer, found FLOAT32").
  absl::StatusOr<uint64_t> GetUint() const;  // any integer type, non-negative
  absl::StatusOr<int64_t> GetInt() const;    // any integer type that fits int64
  absl::StatusOr<double> GetFloat() const;   // FLOAT32 / FLOAT64
  absl::StatusOr<bool> GetBool() const;
  absl::StatusOr<std::string_view> GetString() const;

  // Array accessors (element i of any numeric type, or all strings).
  absl::StatusOr<int64_t> GetIntAt(uint64_t i) const;
  absl::StatusOr<double> GetFloatAt(uint64_t i) const;
  absl::StatusOr<std::span<const std::string>> GetStrings() const;

  // Raw little-endian element bytes for fixed-size types (empty for strings).
  std::string_view raw() const { return raw_; }
  const std::vector<std::string>& strings() const { return strings_; }

  // "42", "\"qwen35moe\"", "[INT32 x 4: 11, 11, 10, 0]", "[STRING x 248320: ...]".
  std::string DebugString(size_t max_elements = 8) const;

  bool operator==(const Value& other) const = default;

 private:
  ValueType element_type_ = ValueType::kUint8;
  bool is_array_ = false;
  uint64_t count_ = 0;
  std::string raw_;                   // fixed-size elements, little-endian
  std::vector<std::string> strings_;  // string elements
};

}  // namespace moed::gguf

#endif  // MOED_LOADER_GGUF_GGUF_VALUE_H_
