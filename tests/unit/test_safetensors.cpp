// SPDX-License-Identifier: MIT
// Safetensors reader and writer: round trips, conversions, atomic writes, a corrupt file per rule.
#include <shareformer/io/safetensors.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using shareformer::FormatError;
using shareformer::IoError;
using shareformer::RowMatrix;
using shareformer::RowVector;
using shareformer::ShapeError;
using namespace shareformer::io;

namespace {

const fs::path corpus_dir = fs::path(SHAREFORMER_TEST_DATA_DIR) / "corrupt";

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "sf-safetensors-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  fs::path operator/(const std::string& name) const { return path_ / name; }
  /// File names in the directory, sorted.
  std::set<std::string> entries() const {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(path_)) out.insert(e.path().filename().string());
    return out;
  }

 private:
  fs::path path_;
};

std::vector<std::uint8_t> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A whole file from a header string and data bytes.
std::vector<std::uint8_t> make_file(const std::string& header,
                                    const std::vector<std::uint8_t>& data = {}) {
  const std::uint64_t length = header.size();
  std::vector<std::uint8_t> out(8 + header.size() + data.size());
  std::memcpy(out.data(), &length, 8);
  std::copy(header.begin(), header.end(), out.begin() + 8);
  std::copy(data.begin(), data.end(), out.begin() + 8 + static_cast<std::ptrdiff_t>(header.size()));
  return out;
}

template <typename T>
std::vector<std::uint8_t> to_bytes(const std::vector<T>& values) {
  std::vector<std::uint8_t> out(values.size() * sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

/// Expects `f` to throw exactly exception type E with `needle` in its message.
template <typename E, typename F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one containing: " << needle;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type, message: " << e.what();
  }
}

float bits_to_float(std::uint32_t bits) {
  float f = 0.0F;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

// 16- and 8-bit float conversions on known bit patterns.

TEST(Half, DecodesKnownBitPatterns) {
  EXPECT_EQ(half_to_float(0x0000), 0.0F);
  EXPECT_TRUE(std::signbit(half_to_float(0x8000)));
  EXPECT_EQ(half_to_float(0x3C00), 1.0F);
  EXPECT_EQ(half_to_float(0xC000), -2.0F);
  EXPECT_EQ(half_to_float(0x3555), 0.333251953125F);
  EXPECT_EQ(half_to_float(0x7BFF), 65504.0F);
  EXPECT_EQ(half_to_float(0x0400), std::ldexp(1.0F, -14));     // smallest normal
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0F, -24));     // smallest subnormal
  EXPECT_EQ(half_to_float(0x03FF), std::ldexp(1023.0F, -24));  // largest subnormal
  EXPECT_EQ(half_to_float(0x8001), -std::ldexp(1.0F, -24));
  EXPECT_EQ(half_to_float(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(half_to_float(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(half_to_float(0x7E00)));
  EXPECT_TRUE(std::isnan(half_to_float(0x7C01)));  // signalling NaN stays NaN
}

TEST(Half, EncodesRoundingToNearestEven) {
  EXPECT_EQ(float_to_half(1.0F), 0x3C00);
  EXPECT_EQ(float_to_half(-0.0F), 0x8000);
  EXPECT_EQ(float_to_half(65504.0F), 0x7BFF);
  EXPECT_EQ(float_to_half(65519.0F), 0x7BFF);
  EXPECT_EQ(float_to_half(65520.0F), 0x7C00);  // tie rounds to even: infinity
  EXPECT_EQ(float_to_half(1e9F), 0x7C00);
  EXPECT_EQ(float_to_half(-std::numeric_limits<float>::infinity()), 0xFC00);
  EXPECT_EQ(float_to_half(1.0F + std::ldexp(1.0F, -11)), 0x3C00);      // tie -> even
  EXPECT_EQ(float_to_half(1.0F + 3 * std::ldexp(1.0F, -11)), 0x3C02);  // tie -> even
  EXPECT_EQ(float_to_half(std::ldexp(1.0F, -14)), 0x0400);
  EXPECT_EQ(float_to_half(std::ldexp(2047.0F, -25)), 0x0400);  // tie between 0x3FF and 0x400
  EXPECT_EQ(float_to_half(std::ldexp(1.0F, -24)), 0x0001);
  EXPECT_EQ(float_to_half(std::ldexp(1.0F, -25)), 0x0000);  // tie -> even zero
  EXPECT_EQ(float_to_half(std::ldexp(1.0001F, -25)), 0x0001);
  EXPECT_EQ(float_to_half(std::ldexp(3.0F, -25)), 0x0002);  // 1.5 units: tie -> 2
  EXPECT_EQ(float_to_half(std::ldexp(5.0F, -25)), 0x0002);  // 2.5 units: tie -> 2
  EXPECT_EQ(float_to_half(1e-10F), 0x0000);
  const std::uint16_t nan = float_to_half(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  EXPECT_NE(float_to_half(bits_to_float(0x7F800001U)) & 0x03FF, 0);  // tiny payload stays NaN
}

TEST(Half, EveryHalfRoundTripsThroughFloat) {
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
    const auto half = static_cast<std::uint16_t>(h);
    const float f = half_to_float(half);
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_half(f), half) << "bits 0x" << std::hex << h;
  }
}

TEST(BFloat16, DecodesAndEncodesKnownBitPatterns) {
  EXPECT_EQ(bfloat16_to_float(0x3F80), 1.0F);
  EXPECT_EQ(bfloat16_to_float(0xC000), -2.0F);
  EXPECT_EQ(bfloat16_to_float(0x0001), std::ldexp(1.0F, -133));  // smallest subnormal
  EXPECT_EQ(bfloat16_to_float(0x7F80), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(bfloat16_to_float(0x7FC0)));
  EXPECT_EQ(float_to_bfloat16(1.0F), 0x3F80);
  EXPECT_EQ(float_to_bfloat16(1.0F + std::ldexp(1.0F, -8)), 0x3F80);      // tie -> even
  EXPECT_EQ(float_to_bfloat16(1.0F + 3 * std::ldexp(1.0F, -8)), 0x3F82);  // tie -> even
  EXPECT_EQ(float_to_bfloat16(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_TRUE(std::isnan(bfloat16_to_float(float_to_bfloat16(bits_to_float(0x7F800001U)))));
  for (std::uint32_t b = 0; b <= 0xFFFF; ++b) {
    const auto bf = static_cast<std::uint16_t>(b);
    if (std::isnan(bfloat16_to_float(bf))) continue;
    ASSERT_EQ(float_to_bfloat16(bfloat16_to_float(bf)), bf) << "bits 0x" << std::hex << b;
  }
}

TEST(Float8, DecodesKnownBitPatterns) {
  EXPECT_EQ(float8_e4m3_to_float(0x38), 1.0F);
  EXPECT_EQ(float8_e4m3_to_float(0xB8), -1.0F);
  EXPECT_EQ(float8_e4m3_to_float(0x7E), 448.0F);
  EXPECT_EQ(float8_e4m3_to_float(0x08), std::ldexp(1.0F, -6));
  EXPECT_EQ(float8_e4m3_to_float(0x01), std::ldexp(1.0F, -9));
  EXPECT_EQ(float8_e4m3_to_float(0x78), 256.0F);  // e4m3fn has no infinity
  EXPECT_TRUE(std::isnan(float8_e4m3_to_float(0x7F)));
  EXPECT_TRUE(std::isnan(float8_e4m3_to_float(0xFF)));
  EXPECT_EQ(float8_e5m2_to_float(0x3C), 1.0F);
  EXPECT_EQ(float8_e5m2_to_float(0x7B), 57344.0F);
  EXPECT_EQ(float8_e5m2_to_float(0x01), std::ldexp(1.0F, -16));
  EXPECT_EQ(float8_e5m2_to_float(0x7C), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(float8_e5m2_to_float(0x7E)));
}

TEST(Dtype, NamesSizesAndLookup) {
  EXPECT_EQ(dtype_size(Dtype::BF16), 2U);
  EXPECT_EQ(dtype_size(Dtype::F64), 8U);
  EXPECT_STREQ(dtype_name(Dtype::F8E4M3), "F8_E4M3");
  EXPECT_STREQ(dtype_name(Dtype::Bool), "BOOL");
  EXPECT_EQ(dtype_from_name("I16"), Dtype::I16);
  EXPECT_FALSE(dtype_from_name("f32").has_value());
  EXPECT_EQ(dtype_of<std::uint16_t>(), Dtype::U16);
  EXPECT_EQ(dtype_of<double>(), Dtype::F64);
  EXPECT_TRUE(is_floating(Dtype::F8E5M2));
  EXPECT_FALSE(is_floating(Dtype::U64));
}

// Round trips.

TEST(SafetensorsRoundTrip, EveryDtypeMetadataAndEmptyTensors) {
  TempDir dir;
  const fs::path path = dir / "all.safetensors";
  RowMatrix<float> m(2, 3);
  m << 1.0F, -2.5F, 3.25F, 0.0F, 1e-3F, -1e30F;
  RowVector<double> bias(4);
  bias << 0.5, -0.25, 1e300, -0.0;
  const std::vector<float> halves = {1.0F, -2.0F, 0.5F, 65504.0F, std::ldexp(1.0F, -24)};
  const std::vector<float> bhalves = {1.0F, -2.0F, 0.5F, std::ldexp(1.0F, 127)};

  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("note", "h\xC3\xA9llo");
  w.add("f32", m);
  w.add("f64", bias);
  w.add("f16", {5}, halves, Dtype::F16);
  w.add("bf16", {2, 2}, bhalves, Dtype::BF16);
  w.add("f8_e4m3", Dtype::F8E4M3, {3}, {0x38, 0xB8, 0x7E});
  w.add("f8_e5m2", Dtype::F8E5M2, {2}, {0x3C, 0x01});
  w.add("i64", {3},
        std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::min(), -1, 1LL << 60});
  w.add("i32", {2}, std::vector<std::int32_t>{std::numeric_limits<std::int32_t>::min(), 7});
  w.add("i16", {2}, std::vector<std::int16_t>{-32768, 32767});
  w.add("i8", {2}, std::vector<std::int8_t>{-128, 127});
  w.add("u8", {3}, std::vector<std::uint8_t>{0, 128, 255});
  w.add("u16", {1}, std::vector<std::uint16_t>{65535});
  w.add("u32", {1}, std::vector<std::uint32_t>{4000000000U});
  w.add("u64", {1}, std::vector<std::uint64_t>{std::numeric_limits<std::uint64_t>::max()});
  w.add("bool", {2, 2}, std::vector<std::uint8_t>{1, 0, 0, 1}, Dtype::Bool);
  w.add("empty", {0, 3}, std::vector<float>{});
  w.add("empty_i64", {0}, std::vector<std::int64_t>{});
  w.add("scalar", {}, std::vector<double>{3.5});
  w.add("rank3", {2, 1, 2}, std::vector<std::int32_t>{1, 2, 3, 4});
  w.write(path.string());

  const SafetensorsFile f = SafetensorsFile::open(path.string());
  EXPECT_EQ(f.name(), path.string());
  EXPECT_EQ(f.metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}, {"note", "h\xC3\xA9llo"}}));
  const std::vector<std::string> order = {
      "f32", "f64", "f16", "bf16", "f8_e4m3", "f8_e5m2", "i64",       "i32",    "i16",  "i8",
      "u8",  "u16", "u32", "u64",  "bool",    "empty",   "empty_i64", "scalar", "rank3"};
  EXPECT_EQ(f.names(), order);
  EXPECT_EQ(f.size(), order.size());

  EXPECT_EQ(f.info("f32").dtype, Dtype::F32);
  EXPECT_EQ(f.info("f32").shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(f.matrix<float>("f32"), m);
  EXPECT_EQ(f.matrix<float>("f32", 2, 3), m);
  EXPECT_EQ(f.matrix<double>("f32"), m.cast<double>());
  EXPECT_EQ(f.info("f64").shape, (std::vector<std::int64_t>{4}));
  EXPECT_EQ(f.vector<double>("f64", 4), bias);
  EXPECT_EQ(f.matrix<double>("f64"), bias);  // rank 1 reads as (1, n)
  EXPECT_EQ(f.values<float>("f16"), halves);
  EXPECT_EQ(f.values<float>("bf16"), bhalves);
  EXPECT_EQ(f.values<double>("f8_e4m3"), (std::vector<double>{1.0, -1.0, 448.0}));
  EXPECT_EQ(f.values<float>("f8_e5m2"), (std::vector<float>{1.0F, std::ldexp(1.0F, -16)}));
  EXPECT_EQ(f.values<std::int64_t>("i64"),
            (std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::min(), -1, 1LL << 60}));
  EXPECT_EQ(f.values<std::int32_t>("i32"),
            (std::vector<std::int32_t>{std::numeric_limits<std::int32_t>::min(), 7}));
  EXPECT_EQ(f.values<std::int16_t>("i16"), (std::vector<std::int16_t>{-32768, 32767}));
  EXPECT_EQ(f.values<std::int8_t>("i8"), (std::vector<std::int8_t>{-128, 127}));
  EXPECT_EQ(f.values<std::uint8_t>("u8"), (std::vector<std::uint8_t>{0, 128, 255}));
  EXPECT_EQ(f.values<std::uint16_t>("u16"), (std::vector<std::uint16_t>{65535}));
  EXPECT_EQ(f.values<std::uint32_t>("u32"), (std::vector<std::uint32_t>{4000000000U}));
  EXPECT_EQ(f.values<std::uint64_t>("u64"),
            (std::vector<std::uint64_t>{std::numeric_limits<std::uint64_t>::max()}));
  EXPECT_EQ(f.info("bool").dtype, Dtype::Bool);
  EXPECT_EQ(f.matrix<std::int32_t>("bool"),
            (RowMatrix<std::int32_t>(2, 2) << 1, 0, 0, 1).finished());

  EXPECT_EQ(f.info("empty").numel(), 0);
  EXPECT_EQ(f.info("empty").byte_size(), 0U);
  EXPECT_EQ(f.matrix<float>("empty").rows(), 0);
  EXPECT_EQ(f.matrix<float>("empty").cols(), 3);
  EXPECT_TRUE(f.values<std::int64_t>("empty_i64").empty());
  EXPECT_EQ(f.vector<std::int64_t>("empty_i64", 0).size(), 0);
  EXPECT_EQ(f.info("scalar").numel(), 1);
  EXPECT_EQ(f.values<double>("scalar"), (std::vector<double>{3.5}));
  EXPECT_EQ(f.values<std::int64_t>("rank3"), (std::vector<std::int64_t>{1, 2, 3, 4}));
}

TEST(SafetensorsRoundTrip, FileBytesEqualToBytesAndLayoutIsContiguous) {
  TempDir dir;
  SafetensorsWriter w;
  w.add("b", {3}, std::vector<std::uint8_t>{1, 2, 3});
  w.add("a", {2}, std::vector<float>{1.0F, 2.0F});
  w.add("z", {0}, std::vector<double>{});
  w.add("c", {1}, std::vector<std::int64_t>{9});
  w.write((dir / "x.safetensors").string());
  const std::vector<std::uint8_t> bytes = w.to_bytes();
  EXPECT_EQ(read_file(dir / "x.safetensors"), bytes);

  std::uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0U);
  const std::string header(bytes.begin() + 8,
                           bytes.begin() + 8 + static_cast<std::ptrdiff_t>(header_len));
  EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}'));  // padded with spaces only

  const SafetensorsFile f = SafetensorsFile::from_bytes(bytes);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"b", "a", "z", "c"}));  // insertion order
  EXPECT_EQ(f.info("b").begin, 0U);
  EXPECT_EQ(f.info("a").begin, 3U);
  EXPECT_EQ(f.info("z").begin, 11U);
  EXPECT_EQ(f.info("c").begin, 11U);
  EXPECT_EQ(f.info("c").end, 19U);
  EXPECT_EQ(f.bytes("b").size, 3U);
  EXPECT_EQ(f.bytes("b").data[2], 3);
}

TEST(SafetensorsRead, AcceptsHeaderPaddedWithSpacesAndEmptyFiles) {
  const std::vector<std::uint8_t> data = to_bytes(std::vector<float>{1.0F, 2.0F});
  const SafetensorsFile f = SafetensorsFile::from_bytes(make_file(
      R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})" + std::string(21, ' '), data));
  EXPECT_EQ(f.values<float>("w"), (std::vector<float>{1.0F, 2.0F}));

  const SafetensorsFile none = SafetensorsFile::from_bytes(make_file("{}"));
  EXPECT_EQ(none.size(), 0U);
  EXPECT_TRUE(none.metadata().empty());

  // Zero-size tensors may share an offset with each other and with the next tensor.
  const SafetensorsFile zeros = SafetensorsFile::from_bytes(make_file(
      R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"I8","shape":[4,0],"data_offsets":[0,0]},)"
      R"("c":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"d":{"dtype":"F64","shape":[0],"data_offsets":[8,8]}})",
      data));
  EXPECT_EQ(zeros.names(), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(zeros.matrix<std::int8_t>("b").rows(), 4);
}

TEST(SafetensorsRead, LookupErrorsNameFileAndTensor) {
  SafetensorsWriter w;
  w.add("w", {2}, std::vector<float>{1.0F, 2.0F});
  const SafetensorsFile f = SafetensorsFile::from_bytes(w.to_bytes());
  EXPECT_TRUE(f.contains("w"));
  EXPECT_FALSE(f.contains("nope"));
  expect_error<FormatError>([&] { (void)f.info("nope"); }, "<memory>: no tensor 'nope'");
  expect_error<FormatError>([&] { (void)f.matrix<float>("nope"); }, "no tensor 'nope'");
}

TEST(SafetensorsRead, ShapeChecksThrowShapeError) {
  SafetensorsWriter w;
  w.add("encoder.layer.3.output.dense.weight", Dtype::U8, {768, 3072},
        std::vector<std::uint8_t>(std::size_t{768} * 3072));
  w.add("bias", {3}, std::vector<float>{1, 2, 3});
  w.add("cube", {1, 1, 1}, std::vector<float>{1});
  const SafetensorsFile f = SafetensorsFile::from_bytes(w.to_bytes(), "model.safetensors");
  try {
    (void)f.matrix<float>("encoder.layer.3.output.dense.weight", 3072, 768);
    ADD_FAILURE() << "no ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(
        e.what(),
        "model.safetensors: tensor 'encoder.layer.3.output.dense.weight' has shape [768, 3072], "
        "expected [3072, 768]");
  }
  expect_error<ShapeError>([&] { (void)f.vector<float>("bias", 4); },
                           "tensor 'bias' has shape [3], expected [4]");
  expect_error<ShapeError>([&] { (void)f.matrix<float>("bias", 1, 3); },
                           "has shape [3], expected [1, 3]");
  expect_error<ShapeError>([&] { (void)f.matrix<float>("cube"); },
                           "has shape [1, 1, 1], expected rank 1 or 2");
  expect_error<ShapeError>([&] { (void)f.vector<float>("cube"); }, "expected rank 1");
  expect_error<ShapeError>([&] { (void)f.map<float>("bias", 3, 1); }, "expected [3, 1]");
}

TEST(SafetensorsRead, ConversionRulesBetweenDtypesAndTypes) {
  SafetensorsWriter w;
  w.add("half", {2}, std::vector<float>{1.5F, -0.25F}, Dtype::F16);
  w.add("ids", {3}, std::vector<std::int64_t>{0, 200, 300});
  w.add("neg", {1}, std::vector<std::int32_t>{-1});
  w.add("mask", Dtype::Bool, {2}, {1, 2});
  const SafetensorsFile f = SafetensorsFile::from_bytes(w.to_bytes(), "conv.safetensors");
  EXPECT_EQ(f.values<double>("half"), (std::vector<double>{1.5, -0.25}));
  EXPECT_EQ(f.values<std::int16_t>("ids"), (std::vector<std::int16_t>{0, 200, 300}));
  EXPECT_EQ(f.values<std::int64_t>("neg"), (std::vector<std::int64_t>{-1}));
  expect_error<FormatError>([&] { (void)f.values<std::uint8_t>("ids"); },
                            "conv.safetensors: tensor 'ids' element 2 (300) does not fit in uint8");
  expect_error<FormatError>([&] { (void)f.values<std::uint64_t>("neg"); },
                            "element 0 (-1) does not fit in uint64");
  expect_error<FormatError>([&] { (void)f.values<float>("ids"); },
                            "tensor 'ids' has dtype I64, which does not load as float");
  expect_error<FormatError>([&] { (void)f.values<std::int32_t>("half"); },
                            "has dtype F16, which does not load as int32");
  expect_error<FormatError>([&] { (void)f.values<std::uint8_t>("mask"); },
                            "element 1 is not a BOOL (0 or 1): 2");
}

TEST(SafetensorsRead, ZeroCopyMapWhenDtypeAndAlignmentAllow) {
  TempDir dir;
  RowMatrix<float> m(2, 2);
  m << 1, 2, 3, 4;
  SafetensorsWriter w;
  w.add("byte", {1}, std::vector<std::uint8_t>{7});
  w.add("skewed", m);  // starts at data offset 1: misaligned for float
  w.add("pad", {3}, std::vector<std::uint8_t>{0, 0, 0});
  w.add("aligned", m);  // starts at data offset 20
  w.add("half", {2}, std::vector<float>{1, 2}, Dtype::F16);
  w.write((dir / "m.safetensors").string());

  SafetensorsFile f = SafetensorsFile::open((dir / "m.safetensors").string());
  ASSERT_TRUE(f.mappable<float>("aligned"));
  const auto view = f.map<float>("aligned", 2, 2);
  EXPECT_EQ(view, m);
  EXPECT_EQ(reinterpret_cast<const std::uint8_t*>(view.data()),
            f.bytes("aligned").data);  // no copy

  EXPECT_FALSE(f.mappable<float>("skewed"));
  expect_error<FormatError>([&] { (void)f.map<float>("skewed"); },
                            "tensor 'skewed' data is not aligned to 4 bytes");
  EXPECT_EQ(f.matrix<float>("skewed"), m);  // the copying fallback

  EXPECT_FALSE(f.mappable<float>("half"));
  EXPECT_FALSE(f.mappable<double>("aligned"));
  expect_error<FormatError>([&] { (void)f.map<float>("half"); },
                            "has dtype F16; a zero-copy map<float> needs F32");

  // Moving the file keeps the mapping, and with it the view.
  const SafetensorsFile moved = std::move(f);
  EXPECT_EQ(view, m);
  EXPECT_EQ(moved.map<float>("aligned"), m);
}

TEST(SafetensorsRead, OsErrorsThrowIoErrorNamingThePath) {
  TempDir dir;
  const std::string missing = (dir / "missing.safetensors").string();
  expect_error<IoError>([&] { (void)SafetensorsFile::open(missing); },
                        missing + ": cannot open: No such file");
  expect_error<IoError>([&] { (void)SafetensorsFile::open((dir / "").string()); },
                        "not a regular file");
}

// The writer: errors before writing, atomic replacement.

TEST(SafetensorsWriter, RejectsBadTensorsBeforeStoringThem) {
  SafetensorsWriter w;
  w.add("w", {2}, std::vector<float>{1, 2});
  expect_error<FormatError>([&] { w.add("w", {1}, std::vector<float>{1}); },
                            "duplicate tensor name 'w'");
  expect_error<FormatError>([&] { w.add("__metadata__", {1}, std::vector<float>{1}); },
                            "'__metadata__' is reserved");
  expect_error<ShapeError>(
      [&] {
        w.add("b", Dtype::F32, {2, 3}, std::vector<std::uint8_t>(20));
      },
      "tensor 'b' with dtype F32 and shape [2, 3] needs 24 bytes, got 20");
  expect_error<ShapeError>(
      [&] {
        w.add("c", {2, 2}, std::vector<double>{1, 2, 3});
      },
      "tensor 'c' has shape [2, 2] (4 elements), got 3 values");
  expect_error<ShapeError>([&] { w.add("d", Dtype::U8, {-1}, {}); }, "negative dimension");
  expect_error<ShapeError>([&] { w.add("e", Dtype::F64, {1LL << 62, 4}, {}); }, "is too large");
  expect_error<FormatError>(
      [&] {
        w.add("f", {2}, std::vector<std::int32_t>{1, 300}, Dtype::I8);
      },
      "tensor 'f' element 1 (300) does not fit in I8");
  expect_error<FormatError>([&] { w.add("g", {1}, std::vector<std::int32_t>{2}, Dtype::Bool); },
                            "does not fit in BOOL");
  expect_error<FormatError>([&] { w.add("h", {1}, std::vector<float>{1}, Dtype::I32); },
                            "cannot store float values as I32");
  expect_error<FormatError>([&] { w.add("i", {1}, std::vector<std::int64_t>{1}, Dtype::F32); },
                            "cannot store int64 values as F32");
  EXPECT_EQ(w.size(), 1U);
  EXPECT_FALSE(w.contains("b"));
}

TEST(SafetensorsWriter, FailedWriteLeavesExistingFileIntactAndNoTemporary) {
  TempDir dir;
  const std::string path = (dir / "model.safetensors").string();
  SafetensorsWriter good;
  good.add("w", {2}, std::vector<float>{1, 2});
  good.write(path);
  const std::vector<std::uint8_t> before = read_file(path);

  // A name that is not UTF-8 cannot be written: the error comes before any file is created.
  SafetensorsWriter bad;
  bad.add("w", {3}, std::vector<float>{4, 5, 6});
  bad.add("\xFF", {1}, std::vector<float>{7});
  expect_error<FormatError>([&] { bad.write(path); }, "not UTF-8");
  EXPECT_EQ(read_file(path), before);
  EXPECT_EQ(dir.entries(), (std::set<std::string>{"model.safetensors"}));

  // Duplicate names and mis-sized buffers are refused by add(), so write() never sees them.
  expect_error<FormatError>([&] { good.add("w", {1}, std::vector<float>{1}); },
                            "duplicate tensor name 'w'");
  expect_error<ShapeError>(
      [&] {
        good.add("v", Dtype::F32, {2}, {1, 2, 3});
      },
      "needs 8 bytes, got 3");
  good.write(path);
  EXPECT_EQ(read_file(path), before);

  // An OS failure at the final rename (the target is a directory) removes the temporary file.
  fs::create_directory(dir / "taken");
  fs::create_directory(dir / "taken" / "child");
  expect_error<IoError>([&] { good.write((dir / "taken").string()); },
                        (dir / "taken").string() + ": cannot rename temporary file onto it: ");
  EXPECT_EQ(dir.entries(), (std::set<std::string>{"model.safetensors", "taken"}));

  // A missing directory fails at creating the temporary file.
  expect_error<IoError>([&] { good.write((dir / "no" / "x.safetensors").string()); },
                        "cannot create a temporary file beside it: No such file or directory");
  EXPECT_EQ(read_file(path), before);
}

TEST(SafetensorsWriter, ReplacesAnExistingFile) {
  TempDir dir;
  const std::string path = (dir / "m.safetensors").string();
  SafetensorsWriter first;
  first.add("a", {1}, std::vector<float>{1});
  first.write(path);
  SafetensorsWriter second;
  second.set_metadata("v", "2");
  second.add("b", {2}, std::vector<double>{2, 3});
  second.write(path);
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"b"}));
  EXPECT_EQ(f.metadata().at("v"), "2");
  EXPECT_EQ(dir.entries(), (std::set<std::string>{"m.safetensors"}));
}

// Corrupt files: one per reader rule (tests/data/make_corrupt.py writes them).

struct CorruptCase {
  const char* file;    // tests/data/corrupt/FILE.safetensors
  const char* needle;  // a distinctive part of the FormatError message
};

const CorruptCase corrupt_cases[] = {
    {"too_short", "file is 5 bytes, too short for the 8-byte header length"},
    {"header_len_over_limit", "header length 100000001 exceeds the 100000000-byte limit"},
    {"header_len_max_u64", "header length 18446744073709551615 exceeds the 100000000-byte limit"},
    {"header_len_past_eof", "header length 64 runs past the end of the file (10 bytes)"},
    {"header_empty", "header does not start with '{'"},
    {"header_leading_space", "header does not start with '{'"},
    {"header_bom", "header does not start with '{'"},
    {"header_array", "header does not start with '{'"},
    {"utf8_invalid_byte", "header is not valid UTF-8 (byte 3)"},
    {"utf8_overlong", "header is not valid UTF-8 (byte 2)"},
    {"utf8_surrogate", "header is not valid UTF-8 (byte 2)"},
    {"utf8_truncated", "header is not valid UTF-8"},
    {"json_syntax", "header is not valid JSON"},
    {"json_truncated", "header is not valid JSON"},
    {"json_trailing_garbage", "header is not valid JSON"},
    {"header_nul_padding", "header contains a NUL byte (byte 2)"},
    {"header_nul_then_garbage", "header contains a NUL byte (byte 2)"},
    {"json_lone_surrogate_escape", "header is not valid JSON"},
    {"json_comment", "header is not valid JSON"},
    {"duplicate_tensor", "duplicate tensor name 'w' in header"},
    {"duplicate_metadata", "duplicate __metadata__ in header"},
    {"duplicate_field", "tensor 'w' has duplicate field 'dtype'"},
    {"duplicate_metadata_key", "__metadata__ has duplicate key 'k'"},
    {"nested_too_deep",
     "header nests deeper than the safetensors schema allows (under '__metadata__')"},
    {"shape_nested", "header nests deeper than the safetensors schema allows (under 'w')"},
    {"metadata_not_object", "__metadata__ is not an object"},
    {"metadata_value_number", "__metadata__ value for key 'k' is not a string"},
    {"metadata_value_object", "__metadata__ value for key 'k' is not a string"},
    {"tensor_not_object", "tensor 'w' is not an object"},
    {"missing_dtype", "tensor 'w' has no field 'dtype'"},
    {"missing_shape", "tensor 'w' has no field 'shape'"},
    {"missing_data_offsets", "tensor 'w' has no field 'data_offsets'"},
    {"extra_field", "tensor 'w' has unexpected field 'offsets'"},
    {"dtype_not_string", "tensor 'w' field 'dtype' is not a string: 4"},
    {"dtype_unknown", "tensor 'w' has unknown dtype 'F12'"},
    {"dtype_lowercase", "tensor 'w' has unknown dtype 'f32'"},
    {"shape_not_array", "tensor 'w' field 'shape' is not an array: 2"},
    {"shape_negative", "tensor 'w' shape[0] is not a non-negative integer: -2"},
    {"shape_fraction", "tensor 'w' shape[0] is not a non-negative integer: 2.0"},
    {"shape_string", "tensor 'w' shape[0] is not a non-negative integer: \"2\""},
    {"shape_null", "tensor 'w' shape[0] is not a non-negative integer: null"},
    {"shape_beyond_int64", "tensor 'w' shape[0] = 9223372036854775808 does not fit in int64"},
    {"offsets_not_array", "tensor 'w' field 'data_offsets' is not an array of two integers"},
    {"offsets_one", "tensor 'w' field 'data_offsets' is not an array of two integers: [8]"},
    {"offsets_three", "tensor 'w' field 'data_offsets' is not an array of two integers: [0,8,8]"},
    {"offsets_negative", "tensor 'w' data_offsets[0] is not a non-negative integer: -8"},
    {"offsets_fraction", "tensor 'w' data_offsets[1] is not a non-negative integer: 8.5"},
    {"offsets_reversed", "tensor 'w' data_offsets [8, 0] have BEGIN > END"},
    {"numel_overflow",
     "tensor 'w' byte size of shape [4294967296, 4294967296, 2] with dtype U8 overflows 64 bits"},
    {"bytes_overflow",
     "tensor 'w' byte size of shape [2305843009213693952] with dtype F64 overflows 64 bits"},
    {"size_too_small",
     "tensor 'w' with dtype F32 and shape [2, 3] needs 24 bytes, but data_offsets [0, 20] span 20"},
    {"size_too_large",
     "tensor 'w' with dtype F16 and shape [3] needs 6 bytes, but data_offsets [0, 8] span 8"},
    {"offsets_past_end",
     "tensor 'w' data_offsets [0, 16] run past the end of the data buffer (8 bytes)"},
    {"offsets_far_past_end",
     "tensor 'w' data_offsets [4611686018427387904, 4611686018427387904] run past the end of the "
     "data buffer (0 bytes)"},
    {"gap_at_start",
     "gap in the data buffer: bytes [0, 4) belong to no tensor (before tensor 'w')"},
    {"gap_between",
     "gap in the data buffer: bytes [8, 12) belong to no tensor (before tensor 'b')"},
    {"overlap", "tensor 'b' data_offsets [4, 12] overlap tensor 'a' [0, 8]"},
    {"overlap_same", "tensor 'b' data_offsets [0, 8] overlap tensor 'a' [0, 8]"},
    {"overlap_empty_inside", "tensor 'z' data_offsets [4, 4] overlap tensor 'a' [0, 8]"},
    {"trailing_bytes",
     "data buffer has 4 trailing bytes after the last tensor (8 of 12 bytes used)"},
    {"no_tensors_with_data",
     "data buffer has 8 trailing bytes after the last tensor (0 of 8 bytes used)"},
};

class CorruptFile : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(CorruptFile, ThrowsFormatErrorNamingFileAndRule) {
  const std::string path = (corpus_dir / (std::string(GetParam().file) + ".safetensors")).string();
  ASSERT_TRUE(fs::exists(path)) << path << ": run tests/data/make_corrupt.py";
  // Through mmap, with the path as prefix...
  expect_error<FormatError>([&] { (void)SafetensorsFile::open(path); },
                            path + ": " + GetParam().needle);
  // ... and from memory, with the given name.
  expect_error<FormatError>([&] { (void)SafetensorsFile::from_bytes(read_file(path), "buf"); },
                            std::string("buf: ") + GetParam().needle);
}

INSTANTIATE_TEST_SUITE_P(Rules, CorruptFile, ::testing::ValuesIn(corrupt_cases),
                         [](const ::testing::TestParamInfo<CorruptCase>& p) {
                           return std::string(p.param.file);
                         });

TEST(CorruptCorpus, EveryFileThrowsFormatErrorAndHasACase) {
  std::set<std::string> known;
  for (const auto& c : corrupt_cases) known.insert(std::string(c.file) + ".safetensors");
  std::size_t seen = 0;
  for (const auto& entry : fs::directory_iterator(corpus_dir)) {
    const std::string name = entry.path().filename().string();
    SCOPED_TRACE(name);
    EXPECT_EQ(known.count(name), 1U) << "no expected message for this corpus file";
    EXPECT_THROW((void)SafetensorsFile::open(entry.path().string()), FormatError);
    ++seen;
  }
  EXPECT_EQ(seen, known.size());
}

TEST(CorruptCorpus, EveryPrefixOfAValidFileIsRejected) {
  SafetensorsWriter w;
  w.set_metadata("k", "v");
  w.add("a", {2, 2}, std::vector<float>{1, 2, 3, 4});
  w.add("b", {3}, std::vector<std::int64_t>{1, 2, 3});
  const std::vector<std::uint8_t> bytes = w.to_bytes();
  for (std::size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW((void)SafetensorsFile::from_bytes(
                     {bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n)}),
                 FormatError)
        << "prefix of " << n << " bytes";
  EXPECT_NO_THROW((void)SafetensorsFile::from_bytes(bytes));
}
