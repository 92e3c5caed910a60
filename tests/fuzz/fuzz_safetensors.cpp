// SPDX-License-Identifier: MIT
// libFuzzer target: the safetensors reader must reject or accept any bytes without touching memory
// outside them, and a file it accepts must survive a write/read round trip unchanged.
// Built with SHAREFORMER_FUZZ_SEEDS_MAIN instead, it is a program writing valid seed files.
#include <shareformer/io/safetensors.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace {

using shareformer::io::SafetensorsFile;
using shareformer::io::SafetensorsWriter;

/// Runs one loader; a shareformer::Error is a legitimate answer, anything else escapes and crashes.
template <typename F>
void attempt(F&& load) {
  try {
    load();
  } catch (const shareformer::Error&) {
  }
}

void touch_every_tensor(const SafetensorsFile& file) {
  for (const auto& t : file.tensors()) {
    attempt([&] { (void)file.values<double>(t.name); });
    attempt([&] { (void)file.values<float>(t.name); });
    attempt([&] { (void)file.values<std::int64_t>(t.name); });
    attempt([&] { (void)file.values<std::uint8_t>(t.name); });
    attempt([&] { (void)file.matrix<float>(t.name); });
    attempt([&] { (void)file.vector<double>(t.name); });
    attempt([&] {
      if (file.mappable<float>(t.name)) (void)file.map<float>(t.name).sum();
    });
    attempt([&] { (void)file.map<std::int32_t>(t.name); });
    const auto bytes = file.bytes(t.name);
    volatile std::uint8_t sink = 0;
    for (const std::uint8_t b : bytes) sink = static_cast<std::uint8_t>(sink ^ b);
  }
}

/// Rewrites an accepted file with the writer and checks the copy reads back identically.
void check_round_trip(const SafetensorsFile& file) {
  SafetensorsWriter writer;
  for (const auto& [key, value] : file.metadata()) writer.set_metadata(key, value);
  for (const auto& t : file.tensors()) {
    const auto bytes = file.bytes(t.name);
    writer.add(t.name, t.dtype, t.shape, std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
  }
  const SafetensorsFile copy = SafetensorsFile::from_bytes(writer.to_bytes(), "copy");
  if (copy.metadata() != file.metadata() || copy.names() != file.names()) __builtin_trap();
  for (const auto& t : file.tensors()) {
    const auto a = file.bytes(t.name);
    const auto b = copy.bytes(t.name);
    if (copy.info(t.name).shape != t.shape || copy.info(t.name).dtype != t.dtype ||
        !std::equal(a.begin(), a.end(), b.begin(), b.end()))
      __builtin_trap();
  }
}

}  // namespace

// libFuzzer calls this entry point by name.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::optional<SafetensorsFile> file;
  try {
    file.emplace(SafetensorsFile::from_bytes(std::vector<std::uint8_t>(data, data + size), "fuzz"));
  } catch (const shareformer::FormatError&) {
    return 0;  // rejected: the expected answer for most inputs
  }
  touch_every_tensor(*file);
  check_round_trip(
      *file);  // an exception here escapes and counts as a crash: accepted files must rewrite
  return 0;
}

#ifdef SHAREFORMER_FUZZ_SEEDS_MAIN
/// Writes a few valid files into the folder argv[1]: the corrupt corpus lacks accepted inputs.
int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  using shareformer::io::Dtype;
  SafetensorsWriter all;
  all.set_metadata("format", "pt");
  all.add("f32", {2, 2}, std::vector<float>{1, -2, 3.5F, 0});
  all.add("f64", {3}, std::vector<double>{0.5, -1e300, 2});
  all.add("f16", {2}, std::vector<float>{1, 65504}, Dtype::F16);
  all.add("bf16", {1, 2}, std::vector<float>{-1, 3}, Dtype::BF16);
  all.add("f8", Dtype::F8E4M3, {2}, {0x38, 0x7F});
  all.add("e5m2", Dtype::F8E5M2, {1}, {0x3C});
  all.add("i64", {2}, std::vector<std::int64_t>{-1, 1LL << 40});
  all.add("i32", {1}, std::vector<std::int32_t>{7});
  all.add("i16", {1}, std::vector<std::int16_t>{-300});
  all.add("i8", {1}, std::vector<std::int8_t>{-1});
  all.add("u8", {2}, std::vector<std::uint8_t>{0, 255});
  all.add("u16", {1}, std::vector<std::uint16_t>{65535});
  all.add("u32", {1}, std::vector<std::uint32_t>{70000});
  all.add("u64", {1}, std::vector<std::uint64_t>{1ULL << 63});
  all.add("mask", {2}, std::vector<std::uint8_t>{0, 1}, Dtype::Bool);
  all.add("empty", {0, 4}, std::vector<float>{});
  all.add("scalar", {}, std::vector<double>{1});
  all.write(dir + "/valid_all_dtypes.safetensors");

  SafetensorsWriter matrix;
  matrix.add("weight", {3, 2}, std::vector<float>{1, 2, 3, 4, 5, 6});
  matrix.add("bias", {2}, std::vector<float>{0.5F, -0.5F});
  matrix.write(dir + "/valid_matrix.safetensors");

  SafetensorsWriter skewed;
  skewed.add("byte", {1}, std::vector<std::uint8_t>{1});
  skewed.add("w", {2}, std::vector<float>{1, 2});
  skewed.write(dir + "/valid_misaligned.safetensors");

  SafetensorsWriter().write(dir + "/valid_empty.safetensors");
  return 0;
}
#endif
