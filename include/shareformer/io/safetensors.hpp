// SPDX-License-Identifier: MIT
// Validating, memory-mapped safetensors reader and an atomic safetensors writer.
#pragma once

#include <shareformer/core/error.hpp>
#include <shareformer/core/types.hpp>
#include <shareformer/io/half.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shareformer/io/safetensors.hpp reads little-endian data in place: little-endian hosts only"
#endif

namespace shareformer::io {

/// Element types of the safetensors format (names as in the file: "F32", "BF16", "F8_E4M3", ...).
/// Integers (BOOL is one byte, 0 or 1) come first, then floating point from narrowest to widest.
enum class Dtype {
  Bool,
  U8,
  I8,
  U16,
  I16,
  U32,
  I32,
  U64,
  I64,
  F8E4M3,
  F8E5M2,
  F16,
  BF16,
  F32,
  F64
};

namespace detail {
struct DtypeTraits {
  const char* name;
  std::size_t size;
};
// Indexed by Dtype.
inline constexpr DtypeTraits dtype_traits[] = {
    {"BOOL", 1},    {"U8", 1},  {"I8", 1},   {"U16", 2}, {"I16", 2},
    {"U32", 4},     {"I32", 4}, {"U64", 8},  {"I64", 8}, {"F8_E4M3", 1},
    {"F8_E5M2", 1}, {"F16", 2}, {"BF16", 2}, {"F32", 4}, {"F64", 8}};
}  // namespace detail

/// Bytes per element of `dtype`.
constexpr std::size_t dtype_size(Dtype dtype) {
  return detail::dtype_traits[static_cast<int>(dtype)].size;
}

/// The name safetensors uses for `dtype` ("F32", "BOOL", "F8_E4M3", ...).
constexpr const char* dtype_name(Dtype dtype) {
  return detail::dtype_traits[static_cast<int>(dtype)].name;
}

/// The Dtype called `name` in a file, or nullopt for a name this library does not know.
inline std::optional<Dtype> dtype_from_name(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(Dtype::F64); ++i) {
    const auto dtype = static_cast<Dtype>(i);
    if (name == dtype_name(dtype)) return dtype;
  }
  return std::nullopt;
}

/// Whether `dtype` holds floating-point values (F64 F32 F16 BF16 F8_*).
constexpr bool is_floating(Dtype dtype) { return dtype >= Dtype::F8E4M3; }

/// The Dtype whose elements are exactly C++ type T (float -> F32, std::int64_t -> I64, ...).
template <typename T>
constexpr Dtype dtype_of() {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>, "dtype_of: unsupported type");
  if constexpr (std::is_floating_point_v<T>) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "dtype_of: only float and double");
    return sizeof(T) == 4 ? Dtype::F32 : Dtype::F64;
  } else {
    constexpr Dtype by_size[] = {Dtype::U8, Dtype::U16, Dtype::U32, Dtype::U64};
    constexpr int log2_size = sizeof(T) == 1 ? 0 : sizeof(T) == 2 ? 1 : sizeof(T) == 4 ? 2 : 3;
    // Each signed dtype follows its unsigned one.
    return static_cast<Dtype>(static_cast<int>(by_size[log2_size]) + (std::is_signed_v<T> ? 1 : 0));
  }
}

/// Name, type, shape and place of one tensor; offsets count from the data buffer after the header.
struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  ///< first byte, relative to the data buffer
  std::uint64_t end = 0;    ///< one past the last byte

  /// Number of elements (1 for a rank-0 tensor).
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (const std::int64_t d : shape) n *= d;
    return n;
  }
  /// Size of the data in bytes: end - begin.
  std::uint64_t byte_size() const { return end - begin; }
};

/// A read-only view of bytes owned by a SafetensorsFile.
struct ByteSpan {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
  const std::uint8_t* begin() const { return data; }
  const std::uint8_t* end() const { return data + size; }
};

namespace detail {

constexpr std::uint64_t max_header_size = 100'000'000;

/// "[768, 3072]"
template <typename Int>
std::string format_shape(const std::vector<Int>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i)
    out += (i == 0 ? "" : ", ") + std::to_string(static_cast<long long>(shape[i]));
  return out + "]";
}

/// Product of `shape` times `element_size`, or nullopt if it overflows 64 bits; sets `numel`.
inline std::optional<std::uint64_t> checked_bytes(const std::vector<std::int64_t>& shape,
                                                  std::size_t element_size, std::uint64_t& numel) {
  std::uint64_t n = 1;
  for (const std::int64_t d : shape) {
    const auto u = static_cast<std::uint64_t>(d);
    if (u != 0 && n > std::numeric_limits<std::uint64_t>::max() / u) return std::nullopt;
    n *= u;
  }
  numel = n;
  if (n > std::numeric_limits<std::uint64_t>::max() / element_size) return std::nullopt;
  return n * element_size;
}

/// Offset of the first byte that breaks strict UTF-8 (RFC 3629), or npos when `s` is valid.
inline std::size_t find_invalid_utf8(const std::uint8_t* s, std::size_t n) {
  std::size_t i = 0;
  while (i < n) {
    const std::uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t extra = 0;
    std::uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF)
      extra = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      lo = c == 0xE0 ? 0xA0 : 0x80;
      hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      lo = c == 0xF0 ? 0x90 : 0x80;
      hi = c == 0xF4 ? 0x8F : 0xBF;
    } else
      return i;
    if (n - i <= extra || s[i + 1] < lo || s[i + 1] > hi) return i;
    for (std::size_t k = 2; k <= extra; ++k)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
    i += extra + 1;
  }
  return std::string::npos;
}

template <typename S>
S load_le(const std::uint8_t* p) {
  S value;
  std::memcpy(&value, p, sizeof value);
  return value;
}

/// "float", "double", "int8", "uint64", ...
template <typename T>
std::string type_name() {
  if constexpr (std::is_same_v<T, float>)
    return "float";
  else if constexpr (std::is_same_v<T, double>)
    return "double";
  else
    return std::string(std::is_signed_v<T> ? "int" : "uint") + std::to_string(8 * sizeof(T));
}

/// Whether integer `value` is representable in integral type T.
template <typename T, typename S>
bool fits(S value) {
  if constexpr (std::is_signed_v<S>) {
    if (value < 0)
      return std::is_signed_v<T> && static_cast<std::int64_t>(value) >=
                                        static_cast<std::int64_t>(std::numeric_limits<T>::min());
  }
  return static_cast<std::uint64_t>(value) <=
         static_cast<std::uint64_t>(std::numeric_limits<T>::max());
}

/// Calls f(S{}) with S the C++ type stored by integer dtype `dtype` (BOOL: std::uint8_t) and
/// returns true; returns false for a floating dtype.
template <typename F>
bool visit_integer(Dtype dtype, F&& f) {
  switch (dtype) {
    case Dtype::Bool:
    case Dtype::U8: return f(std::uint8_t{}), true;
    case Dtype::I8: return f(std::int8_t{}), true;
    case Dtype::U16: return f(std::uint16_t{}), true;
    case Dtype::I16: return f(std::int16_t{}), true;
    case Dtype::U32: return f(std::uint32_t{}), true;
    case Dtype::I32: return f(std::int32_t{}), true;
    case Dtype::U64: return f(std::uint64_t{}), true;
    case Dtype::I64: return f(std::int64_t{}), true;
    default: return false;
  }
}

/// "PATH: WHAT: strerror(errno)"; call it before anything else can change errno.
inline std::string os_error(const char* what, const std::string& path) {
  const int code = errno;
  return path + ": " + what + ": " + std::strerror(code);
}

}  // namespace detail

/// A validated safetensors file: memory-mapped (open) or held in memory (from_bytes).
///
/// Construction checks every rule of the format and throws FormatError("FILE: ...") on the first
/// broken one, so the accessors below can trust offsets and sizes. Typed loaders convert on load:
/// floating T (float, double) reads F64 F32 F16 BF16 F8_E4M3 F8_E5M2; integral T reads the integer
/// dtypes and BOOL, checking every value fits T. Float <-> integer loads throw FormatError: a model
/// that reads token ids as weights is wrong, and silent rounding would hide it.
/// A mapped file must not be truncated by another process while open (the OS would raise SIGBUS).
class SafetensorsFile {
 public:
  /// Maps the file at `path` read-only and validates it. Throws IoError (open, stat, mmap) and
  /// FormatError; messages start with `path`.
  static SafetensorsFile open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw IoError(detail::os_error("cannot open", path));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const std::string message = detail::os_error("cannot stat", path);
      ::close(fd);
      throw IoError(message);
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw IoError(path + ": not a regular file");
    }
    SafetensorsFile file(path);
    file.size_ = static_cast<std::size_t>(st.st_size);
    if (file.size_ > 0) {  // mmap rejects length 0; an empty file fails validation below
      void* base = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (base == MAP_FAILED) {
        const std::string message = detail::os_error("cannot mmap", path);
        ::close(fd);
        throw IoError(message);
      }
      file.base_ = static_cast<const std::uint8_t*>(base);
      file.mapped_ = true;
    }
    ::close(fd);  // the mapping keeps the file alive
    file.parse();
    return file;
  }

  /// Validates a whole file held in memory; `name` starts every error message.
  static SafetensorsFile from_bytes(std::vector<std::uint8_t> bytes,
                                    std::string name = "<memory>") {
    SafetensorsFile file(std::move(name));
    file.owned_ = std::move(bytes);
    file.base_ = file.owned_.data();
    file.size_ = file.owned_.size();
    file.parse();
    return file;
  }

  SafetensorsFile(SafetensorsFile&& other) noexcept { *this = std::move(other); }
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept {
    if (this == &other) return *this;
    unmap();
    name_ = std::move(other.name_);
    owned_ = std::move(other.owned_);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, false);
    data_start_ = other.data_start_;
    metadata_ = std::move(other.metadata_);
    tensors_ = std::move(other.tensors_);
    index_ = std::move(other.index_);
    return *this;
  }
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile() { unmap(); }

  /// The path or name that starts error messages.
  const std::string& name() const { return name_; }
  /// The "__metadata__" entries (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// Every tensor, in the order of the header.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  /// Tensor names, in the order of the header.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& t : tensors_) out.push_back(t.name);
    return out;
  }
  /// Number of tensors.
  std::size_t size() const { return tensors_.size(); }
  /// Whether a tensor called `name` exists.
  bool contains(const std::string& name) const { return index_.count(name) != 0; }

  /// The tensor called `name`. Throws FormatError "FILE: no tensor 'NAME'".
  const TensorInfo& info(const std::string& name) const {
    const auto it = index_.find(name);
    if (it == index_.end()) throw FormatError(name_ + ": no tensor '" + name + "'");
    return tensors_[it->second];
  }

  /// The raw little-endian bytes of tensor `name`. Throws FormatError if absent.
  ByteSpan bytes(const std::string& name) const { return bytes_of(info(name)); }

  /// All elements of tensor `name` (any rank, row-major), converted to T as described above.
  template <typename T>
  std::vector<T> values(const std::string& name) const {
    const TensorInfo& t = info(name);
    std::vector<T> out(static_cast<std::size_t>(t.numel()));
    decode(t, out.data());
    return out;
  }

  /// Rank-2 tensor (rows, cols) as a matrix; a rank-1 tensor [n] reads as (1, n).
  /// Throws ShapeError for another rank, FormatError for a missing tensor or incompatible dtype.
  template <typename T>
  RowMatrix<T> matrix(const std::string& name) const {
    const TensorInfo& t = info(name);
    const auto [rows, cols] = matrix_dims(t);
    RowMatrix<T> out(rows, cols);
    decode(t, out.data());
    return out;
  }

  /// Tensor `name`, which must have shape [rows, cols]. Throws ShapeError
  /// "FILE: tensor 'NAME' has shape [a, b], expected [rows, cols]", FormatError as matrix().
  template <typename T>
  RowMatrix<T> matrix(const std::string& name, Index rows, Index cols) const {
    const TensorInfo& t = info(name);
    expect_shape(t, {rows, cols});
    RowMatrix<T> out(rows, cols);
    decode(t, out.data());
    return out;
  }

  /// Rank-1 tensor [n] as a (1, n) row vector. Throws ShapeError for another rank.
  template <typename T>
  RowVector<T> vector(const std::string& name) const {
    const TensorInfo& t = info(name);
    if (t.shape.size() != 1)
      throw ShapeError(name_ + ": tensor '" + name + "' has shape " +
                       detail::format_shape(t.shape) + ", expected rank 1");
    RowVector<T> out;
    out.resize(static_cast<Index>(t.shape[0]));
    decode(t, out.data());
    return out;
  }

  /// Tensor `name`, which must have shape [expected_len]. Throws ShapeError otherwise.
  template <typename T>
  RowVector<T> vector(const std::string& name, Index expected_len) const {
    const TensorInfo& t = info(name);
    expect_shape(t, {expected_len});
    RowVector<T> out;
    out.resize(expected_len);
    decode(t, out.data());
    return out;
  }

  /// Whether map<T>(name) can view the tensor in place: rank 1 or 2, dtype equal to
  /// dtype_of<T>(), data aligned to alignof(T). Throws FormatError if `name` is absent.
  template <typename T>
  bool mappable(const std::string& name) const {
    const TensorInfo& t = info(name);
    return t.dtype == dtype_of<T>() && (t.shape.size() == 1 || t.shape.size() == 2) &&
           reinterpret_cast<std::uintptr_t>(bytes_of(t).data) % alignof(T) == 0;
  }

  /// Zero-copy (rows, cols) view of tensor `name` (rank 1 reads as (1, n)), valid while this object
  /// lives. Throws FormatError when !mappable<T>(name) for dtype or alignment (use matrix<T>(),
  /// which copies and converts), ShapeError for another rank.
  template <typename T>
  Eigen::Map<const RowMatrix<T>> map(const std::string& name) const {
    const TensorInfo& t = info(name);
    const auto [rows, cols] = matrix_dims(t);
    return Eigen::Map<const RowMatrix<T>>(mapped_data<T>(t), rows, cols);
  }

  /// As map<T>(name), checking the shape is [rows, cols] (ShapeError otherwise).
  template <typename T>
  Eigen::Map<const RowMatrix<T>> map(const std::string& name, Index rows, Index cols) const {
    const TensorInfo& t = info(name);
    expect_shape(t, {rows, cols});
    return Eigen::Map<const RowMatrix<T>>(mapped_data<T>(t), rows, cols);
  }

 private:
  explicit SafetensorsFile(std::string name) : name_(std::move(name)) {}

  void unmap() noexcept {
    if (mapped_) ::munmap(const_cast<std::uint8_t*>(base_), size_);
    mapped_ = false;
    base_ = nullptr;
  }

  [[noreturn]] void fail(const std::string& what) const { throw FormatError(name_ + ": " + what); }

  ByteSpan bytes_of(const TensorInfo& t) const {
    return {base_ + data_start_ + t.begin, static_cast<std::size_t>(t.byte_size())};
  }

  std::pair<Index, Index> matrix_dims(const TensorInfo& t) const {
    if (t.shape.size() == 2)
      return {static_cast<Index>(t.shape[0]), static_cast<Index>(t.shape[1])};
    if (t.shape.size() == 1) return {1, static_cast<Index>(t.shape[0])};
    throw ShapeError(name_ + ": tensor '" + t.name + "' has shape " +
                     detail::format_shape(t.shape) + ", expected rank 1 or 2");
  }

  void expect_shape(const TensorInfo& t, const std::vector<Index>& expected) const {
    const bool same =
        t.shape.size() == expected.size() &&
        std::equal(expected.begin(), expected.end(), t.shape.begin(),
                   [](Index e, std::int64_t d) { return e == static_cast<Index>(d); });
    if (!same)
      throw ShapeError(name_ + ": tensor '" + t.name + "' has shape " +
                       detail::format_shape(t.shape) + ", expected " +
                       detail::format_shape(expected));
  }

  template <typename T>
  const T* mapped_data(const TensorInfo& t) const {
    if (t.dtype != dtype_of<T>())
      fail("tensor '" + t.name + "' has dtype " + dtype_name(t.dtype) + "; a zero-copy map<" +
           detail::type_name<T>() + "> needs " + dtype_name(dtype_of<T>()) +
           " (matrix<T>() converts)");
    const std::uint8_t* p = bytes_of(t).data;
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) != 0)
      fail("tensor '" + t.name + "' data is not aligned to " + std::to_string(alignof(T)) +
           " bytes for a zero-copy map (matrix<T>() copies)");
    return reinterpret_cast<const T*>(p);
  }

  /// Converts every element of `t` into dst[0, numel).
  template <typename T>
  void decode(const TensorInfo& t, T* dst) const {
    static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>, "unsupported element type");
    const std::uint8_t* src = bytes_of(t).data;
    const auto n = static_cast<std::size_t>(t.numel());
    if (t.dtype == dtype_of<T>()) {  // same type: one copy (memcpy, as src may be unaligned)
      if (n != 0) std::memcpy(dst, src, n * sizeof(T));
      return;
    }
    // Reads element i as stored type S and writes convert(value, i) to dst[i].
    const auto each = [&](auto stored, auto&& convert) {
      using S = decltype(stored);
      for (std::size_t i = 0; i < n; ++i)
        dst[i] = convert(detail::load_le<S>(src + i * sizeof(S)), i);
    };
    const auto mismatch = [&] {
      fail("tensor '" + t.name + "' has dtype " + dtype_name(t.dtype) +
           ", which does not load as " + detail::type_name<T>());
    };
    if constexpr (std::is_floating_point_v<T>) {
      const auto cast = [](auto v, std::size_t) { return static_cast<T>(v); };
      const auto via = [](auto to_float) {
        return [to_float](auto v, std::size_t) { return static_cast<T>(to_float(v)); };
      };
      switch (t.dtype) {
        case Dtype::F64: return each(double{}, cast);
        case Dtype::F32: return each(float{}, cast);
        case Dtype::F16: return each(std::uint16_t{}, via(half_to_float));
        case Dtype::BF16: return each(std::uint16_t{}, via(bfloat16_to_float));
        case Dtype::F8E4M3: return each(std::uint8_t{}, via(float8_e4m3_to_float));
        case Dtype::F8E5M2: return each(std::uint8_t{}, via(float8_e5m2_to_float));
        default: return mismatch();
      }
    } else {
      const auto checked = [&](auto v, std::size_t i) {
        if (t.dtype == Dtype::Bool && v > 1)
          fail("tensor '" + t.name + "' element " + std::to_string(i) +
               " is not a BOOL (0 or 1): " + std::to_string(v));
        if (!detail::fits<T>(v))
          fail("tensor '" + t.name + "' element " + std::to_string(i) + " (" + std::to_string(v) +
               ") does not fit in " + detail::type_name<T>());
        return static_cast<T>(v);
      };
      if (!detail::visit_integer(t.dtype, [&](auto stored) { each(stored, checked); })) mismatch();
    }
  }

  /// Validates the 8-byte length, the JSON header and the data layout; fills the members.
  void parse() {
    // Rule: the u64 little-endian header length, bounded and inside the file.
    if (size_ < 8)
      fail("file is " + std::to_string(size_) + " bytes, too short for the 8-byte header length");
    const auto header_len = detail::load_le<std::uint64_t>(base_);
    if (header_len > detail::max_header_size)
      fail("header length " + std::to_string(header_len) + " exceeds the " +
           std::to_string(detail::max_header_size) + "-byte limit");
    if (header_len > size_ - 8)
      fail("header length " + std::to_string(header_len) + " runs past the end of the file (" +
           std::to_string(size_) + " bytes)");
    const std::uint8_t* header = base_ + 8;
    const auto header_size = static_cast<std::size_t>(header_len);
    data_start_ = 8 + header_size;
    const std::uint64_t data_size = size_ - data_start_;

    // Rule: the header is a UTF-8 JSON object ("{" first, trailing spaces allowed by JSON).
    if (header_size == 0 || header[0] != '{') fail("header does not start with '{'");
    const std::size_t bad = detail::find_invalid_utf8(header, header_size);
    if (bad != std::string::npos)
      fail("header is not valid UTF-8 (byte " + std::to_string(bad) + ")");
    // nlohmann_json stops at a NUL as if the input ended there, which would hide trailing garbage.
    const void* nul = std::memchr(header, 0, header_size);
    if (nul != nullptr)
      fail("header contains a NUL byte (byte " +
           std::to_string(static_cast<const std::uint8_t*>(nul) - header) + ")");
    std::vector<std::string> order;  // top-level keys as they appear in the header
    const nlohmann::json json = parse_json(header, header_size, order);
    if (!json.is_object()) fail("header is not a JSON object");

    // Rule: the schema of every entry.
    for (const std::string& key : order) {
      const nlohmann::json& value = json.at(key);
      if (key == "__metadata__")
        read_metadata(value);
      else
        tensors_.push_back(read_tensor(key, value));
    }

    // Rule: sorted by offset, tensors tile the data buffer exactly.
    std::vector<const TensorInfo*> sorted;
    sorted.reserve(tensors_.size());
    for (const auto& t : tensors_) {
      if (t.end > data_size)
        fail("tensor '" + t.name + "' data_offsets [" + std::to_string(t.begin) + ", " +
             std::to_string(t.end) + "] run past the end of the data buffer (" +
             std::to_string(data_size) + " bytes)");
      sorted.push_back(&t);
    }
    std::sort(sorted.begin(), sorted.end(), [](const TensorInfo* a, const TensorInfo* b) {
      return std::tie(a->begin, a->end) < std::tie(b->begin, b->end);
    });
    std::uint64_t expected = 0;
    const TensorInfo* previous = nullptr;
    for (const TensorInfo* t : sorted) {
      if (t->begin > expected)
        fail("gap in the data buffer: bytes [" + std::to_string(expected) + ", " +
             std::to_string(t->begin) + ") belong to no tensor (before tensor '" + t->name + "')");
      if (t->begin < expected)
        fail("tensor '" + t->name + "' data_offsets [" + std::to_string(t->begin) + ", " +
             std::to_string(t->end) + "] overlap tensor '" + previous->name + "' [" +
             std::to_string(previous->begin) + ", " + std::to_string(previous->end) + "]");
      expected = t->end;
      previous = t;
    }
    if (expected != data_size)
      fail("data buffer has " + std::to_string(data_size - expected) +
           " trailing bytes after the last tensor (" + std::to_string(expected) + " of " +
           std::to_string(data_size) + " bytes used)");

    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  /// Parses the header, rejecting duplicate keys and nesting deeper than the schema; records the
  /// top-level keys in header order in `order`.
  nlohmann::json parse_json(const std::uint8_t* header, std::size_t length,
                            std::vector<std::string>& order) const {
    using Event = nlohmann::json::parse_event_t;
    std::vector<std::unordered_set<std::string>> keys;  // one set per open object
    std::string entry;                                  // current top-level key
    const auto callback = [&](int depth, Event event, nlohmann::json& parsed) {
      if ((event == Event::object_start || event == Event::array_start) && depth >= 3)
        fail("header nests deeper than the safetensors schema allows (under '" + entry + "')");
      if (event == Event::object_start) keys.emplace_back();
      if (event == Event::object_end) keys.pop_back();
      if (event == Event::key) {
        std::string key = parsed.get<std::string>();
        if (!keys.back().insert(key).second) {
          if (depth == 1 && key == "__metadata__") fail("duplicate __metadata__ in header");
          if (depth == 1) fail("duplicate tensor name '" + key + "' in header");
          if (entry == "__metadata__") fail("__metadata__ has duplicate key '" + key + "'");
          fail("tensor '" + entry + "' has duplicate field '" + key + "'");
        }
        if (depth == 1) {
          entry = key;
          order.push_back(std::move(key));
        }
      }
      return true;
    };
    try {
      const auto* first = reinterpret_cast<const char*>(header);
      return nlohmann::json::parse(first, first + length, callback);
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("header is not valid JSON: ") + e.what());
    }
  }

  void read_metadata(const nlohmann::json& value) {
    if (!value.is_object()) fail("__metadata__ is not an object");
    for (const auto& [key, item] : value.items()) {
      if (!item.is_string()) fail("__metadata__ value for key '" + key + "' is not a string");
      metadata_.emplace(key, item.get<std::string>());
    }
  }

  /// A non-negative JSON integer that fits int64, or FormatError naming `what`.
  std::int64_t read_index(const nlohmann::json& v, const std::string& tensor,
                          const std::string& what) const {
    const bool integer =
        v.is_number_integer() && (v.is_number_unsigned() || v.get<std::int64_t>() >= 0);
    if (!integer)
      fail("tensor '" + tensor + "' " + what + " is not a non-negative integer: " + v.dump());
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      fail("tensor '" + tensor + "' " + what + " = " + std::to_string(u) +
           " does not fit in int64");
    return static_cast<std::int64_t>(u);
  }

  TensorInfo read_tensor(const std::string& name, const nlohmann::json& value) const {
    if (!value.is_object()) fail("tensor '" + name + "' is not an object");
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!value.contains(field)) fail("tensor '" + name + "' has no field '" + field + "'");
    for (const auto& item : value.items())
      if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets")
        fail("tensor '" + name + "' has unexpected field '" + item.key() + "'");

    TensorInfo t;
    t.name = name;
    const nlohmann::json& dtype = value.at("dtype");
    if (!dtype.is_string())
      fail("tensor '" + name + "' field 'dtype' is not a string: " + dtype.dump());
    const auto known = dtype_from_name(dtype.get<std::string>());
    if (!known) fail("tensor '" + name + "' has unknown dtype '" + dtype.get<std::string>() + "'");
    t.dtype = *known;

    const nlohmann::json& shape = value.at("shape");
    if (!shape.is_array())
      fail("tensor '" + name + "' field 'shape' is not an array: " + shape.dump());
    for (std::size_t i = 0; i < shape.size(); ++i)
      t.shape.push_back(read_index(shape[i], name, "shape[" + std::to_string(i) + "]"));

    const nlohmann::json& offsets = value.at("data_offsets");
    if (!offsets.is_array() || offsets.size() != 2)
      fail("tensor '" + name +
           "' field 'data_offsets' is not an array of two integers: " + offsets.dump());
    t.begin = static_cast<std::uint64_t>(read_index(offsets[0], name, "data_offsets[0]"));
    t.end = static_cast<std::uint64_t>(read_index(offsets[1], name, "data_offsets[1]"));
    if (t.begin > t.end)
      fail("tensor '" + name + "' data_offsets [" + std::to_string(t.begin) + ", " +
           std::to_string(t.end) + "] have BEGIN > END");

    // Rule: the byte size of dtype x shape, computed without overflow, matches the offsets.
    std::uint64_t numel = 0;
    const auto bytes = detail::checked_bytes(t.shape, dtype_size(t.dtype), numel);
    if (!bytes)
      fail("tensor '" + name + "' byte size of shape " + detail::format_shape(t.shape) +
           " with dtype " + dtype_name(t.dtype) + " overflows 64 bits");
    if (*bytes != t.byte_size())
      fail("tensor '" + name + "' with dtype " + dtype_name(t.dtype) + " and shape " +
           detail::format_shape(t.shape) + " needs " + std::to_string(*bytes) +
           " bytes, but data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
           "] span " + std::to_string(t.byte_size()));
    return t;
  }

  std::string name_;
  std::vector<std::uint8_t> owned_;  // from_bytes: the whole file
  const std::uint8_t* base_ = nullptr;
  std::size_t size_ = 0;
  bool mapped_ = false;
  std::size_t data_start_ = 0;  // 8 + header length
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
};

/// Collects tensors and metadata, then writes a safetensors file atomically.
///
/// Tensors are laid out contiguously in insertion order after a JSON header padded with spaces to a
/// multiple of 8 bytes. add() throws before anything is stored: ShapeError when sizes disagree,
/// FormatError for a duplicate or reserved name or a value the dtype cannot hold.
class SafetensorsWriter {
 public:
  /// Sets metadata entry `key` (overwriting an earlier value).
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  /// Adds a tensor from raw little-endian bytes; bytes.size() must equal numel(shape) * dtype_size.
  void add(const std::string& name, Dtype dtype, std::vector<std::int64_t> shape,
           std::vector<std::uint8_t> bytes) {
    check_new_name(name);
    const std::uint64_t needed = byte_size(name, dtype, shape);
    if (needed != bytes.size())
      throw ShapeError("safetensors writer: tensor '" + name + "' with dtype " + dtype_name(dtype) +
                       " and shape " + detail::format_shape(shape) + " needs " +
                       std::to_string(needed) + " bytes, got " + std::to_string(bytes.size()));
    names_.insert(name);
    entries_.push_back({name, dtype, std::move(shape), std::move(bytes)});
  }

  /// Adds `values` (row-major, numel(shape) of them) stored as `dtype`: floating T as F64 F32 F16
  /// BF16, integral T as any integer dtype or BOOL (each value range-checked).
  template <typename T>
  void add(const std::string& name, std::vector<std::int64_t> shape, const std::vector<T>& values,
           Dtype dtype = dtype_of<T>()) {
    check_new_name(name);
    std::uint64_t numel = 0;
    byte_size(name, dtype, shape, &numel);
    if (numel != values.size())
      throw ShapeError("safetensors writer: tensor '" + name + "' has shape " +
                       detail::format_shape(shape) + " (" + std::to_string(numel) +
                       " elements), got " + std::to_string(values.size()) + " values");
    add(name, dtype, std::move(shape), encode(name, values.data(), values.size(), dtype));
  }

  /// Adds an Eigen matrix as shape [rows, cols], or a vector (compile-time row or column) as [n],
  /// stored as `dtype` (see the vector overload).
  template <typename Derived>
  void add(const std::string& name, const Eigen::MatrixBase<Derived>& m,
           Dtype dtype = dtype_of<typename Derived::Scalar>()) {
    using T = typename Derived::Scalar;
    std::vector<T> values;
    values.reserve(static_cast<std::size_t>(m.size()));
    for (Index r = 0; r < m.rows(); ++r)
      for (Index c = 0; c < m.cols(); ++c) values.push_back(m(r, c));
    std::vector<std::int64_t> shape;
    if constexpr (static_cast<bool>(Derived::IsVectorAtCompileTime))
      shape = {static_cast<std::int64_t>(m.size())};
    else
      shape = {static_cast<std::int64_t>(m.rows()), static_cast<std::int64_t>(m.cols())};
    add(name, std::move(shape), values, dtype);
  }

  /// Whether a tensor called `name` was added.
  bool contains(const std::string& name) const { return names_.count(name) != 0; }
  /// Number of tensors added.
  std::size_t size() const { return entries_.size(); }

  /// The complete file as bytes. Throws FormatError for names or metadata that are not UTF-8.
  std::vector<std::uint8_t> to_bytes() const {
    std::vector<std::uint8_t> out = prefix();
    for (const auto& e : entries_) out.insert(out.end(), e.bytes.begin(), e.bytes.end());
    return out;
  }

  /// Writes the file to `path` through a temporary file in the same directory renamed over it, so
  /// `path` is either untouched or complete. Throws IoError (naming the path and the OS reason) and
  /// FormatError as to_bytes(); no temporary file is left behind.
  void write(const std::string& path) const {
    const std::vector<std::uint8_t> head = prefix();
    static std::atomic<unsigned> counter{0};
    std::string temp;
    int fd = -1;
    for (int attempt = 0; fd < 0; ++attempt) {
      temp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
      fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd < 0 && (errno != EEXIST || attempt >= 100))
        throw IoError(detail::os_error("cannot create a temporary file beside it", path));
    }
    const auto abandon = [&](const char* what) {
      std::string message = detail::os_error(what, path);
      if (fd >= 0) ::close(fd);
      ::unlink(temp.c_str());
      throw IoError(message);
    };
    const auto write_all = [&](const std::uint8_t* p, std::size_t n) {
      while (n > 0) {
        const ::ssize_t written = ::write(fd, p, n);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) abandon("cannot write");
        p += written;
        n -= static_cast<std::size_t>(written);
      }
    };
    write_all(head.data(), head.size());
    for (const auto& e : entries_) write_all(e.bytes.data(), e.bytes.size());
    if (::fsync(fd) != 0) abandon("cannot sync");
    const int closed = ::close(fd);
    fd = -1;
    if (closed != 0) abandon("cannot close");
    if (::rename(temp.c_str(), path.c_str()) != 0) abandon("cannot rename temporary file onto it");
  }

 private:
  struct Entry {
    std::string name;
    Dtype dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> bytes;
  };

  void check_new_name(const std::string& name) const {
    if (name == "__metadata__")
      throw FormatError("safetensors writer: '__metadata__' is reserved, not a tensor name");
    if (contains(name))
      throw FormatError("safetensors writer: duplicate tensor name '" + name + "'");
  }

  static std::uint64_t byte_size(const std::string& name, Dtype dtype,
                                 const std::vector<std::int64_t>& shape,
                                 std::uint64_t* numel_out = nullptr) {
    for (const std::int64_t d : shape)
      if (d < 0)
        throw ShapeError("safetensors writer: tensor '" + name +
                         "' has negative dimension in shape " + detail::format_shape(shape));
    std::uint64_t numel = 0;
    const auto bytes = detail::checked_bytes(shape, dtype_size(dtype), numel);
    if (!bytes || *bytes > std::numeric_limits<std::size_t>::max())
      throw ShapeError("safetensors writer: tensor '" + name + "' shape " +
                       detail::format_shape(shape) + " is too large");
    if (numel_out != nullptr) *numel_out = numel;
    return *bytes;
  }

  /// `values` as little-endian `dtype` bytes; FormatError for a kind or value `dtype` cannot hold.
  template <typename T>
  static std::vector<std::uint8_t> encode(const std::string& name, const T* values, std::size_t n,
                                          Dtype dtype) {
    std::vector<std::uint8_t> out(n * dtype_size(dtype));
    // Stores every value as type S, converted by convert(value, i).
    const auto each = [&](auto stored, auto&& convert) {
      using S = decltype(stored);
      for (std::size_t i = 0; i < n; ++i) {
        const S v = convert(values[i], i);
        std::memcpy(out.data() + i * sizeof(S), &v, sizeof(S));
      }
    };
    const auto refuse = [&] {
      throw FormatError("safetensors writer: tensor '" + name + "' cannot store " +
                        detail::type_name<T>() + " values as " + dtype_name(dtype));
    };
    if constexpr (std::is_floating_point_v<T>) {
      // F16 and BF16 round through float (a double exactly between two halves may round twice).
      const auto via_float = [](auto to_bits) {
        return [to_bits](T v, std::size_t) { return to_bits(static_cast<float>(v)); };
      };
      const auto identity = [](float v) { return v; };
      if (dtype == Dtype::F64)
        each(double{}, [](T v, std::size_t) { return static_cast<double>(v); });
      else if (dtype == Dtype::F32)
        each(float{}, via_float(identity));
      else if (dtype == Dtype::F16)
        each(std::uint16_t{}, via_float(float_to_half));
      else if (dtype == Dtype::BF16)
        each(std::uint16_t{}, via_float(float_to_bfloat16));
      else
        refuse();
    } else {
      const bool integer = detail::visit_integer(dtype, [&](auto stored) {
        using S = decltype(stored);
        each(stored, [&](T v, std::size_t i) {
          if (!detail::fits<S>(v) || (dtype == Dtype::Bool && v > 1))
            throw FormatError("safetensors writer: tensor '" + name + "' element " +
                              std::to_string(i) + " (" + std::to_string(v) + ") does not fit in " +
                              dtype_name(dtype));
          return static_cast<S>(v);
        });
      });
      if (!integer) refuse();
    }
    return out;
  }

  /// The 8-byte length and the space-padded JSON header.
  std::vector<std::uint8_t> prefix() const {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::uint64_t offset = 0;
    for (const auto& e : entries_) {
      const std::uint64_t end = offset + e.bytes.size();
      header[e.name] = {
          {"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, end}}};
      offset = end;
    }
    std::string text;
    try {
      text = header.dump();
    } catch (const nlohmann::json::exception& e) {
      throw FormatError(
          std::string("safetensors writer: a tensor name or metadata string is not UTF-8: ") +
          e.what());
    }
    text.append((8 - text.size() % 8) % 8, ' ');
    std::vector<std::uint8_t> out(8 + text.size());
    const std::uint64_t length = text.size();
    std::memcpy(out.data(), &length, 8);
    std::memcpy(out.data() + 8, text.data(), text.size());
    return out;
  }

  std::vector<Entry> entries_;
  std::unordered_set<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace shareformer::io
