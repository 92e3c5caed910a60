// SPDX-License-Identifier: MIT
// Bit-exact conversions between float and the 16- and 8-bit float formats safetensors stores.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace shareformer::io {

namespace detail {
inline std::uint32_t float_bits(float f) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}
inline float bits_float(std::uint32_t bits) {
  float f = 0.0F;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
}  // namespace detail

/// IEEE 754 binary16 -> float, exact for every input: subnormals, +-0, +-inf, NaN (payload kept).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000U) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1FU;
  const std::uint32_t mantissa = h & 0x3FFU;
  if (exponent == 0x1F) return detail::bits_float(sign | 0x7F800000U | (mantissa << 13));
  if (exponent != 0) return detail::bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa * 2^-24, exact in float.
  const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  return sign != 0 ? -magnitude : magnitude;
}

/// float -> IEEE 754 binary16, rounding to nearest even; overflow gives +-inf, NaN stays a quiet
/// NaN.
inline std::uint16_t float_to_half(float f) {
  const std::uint32_t bits = detail::float_bits(f);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000U);
  const std::uint32_t magnitude = bits & 0x7FFFFFFFU;
  if (magnitude > 0x7F800000U)  // NaN: keep the top payload bits, force quiet
    return static_cast<std::uint16_t>(sign | 0x7E00U | ((magnitude >> 13) & 0x3FFU));
  // 65520 and above round to infinity (65504 is the largest finite half).
  if (magnitude >= 0x477FF000U) return static_cast<std::uint16_t>(sign | 0x7C00U);
  if (magnitude >= 0x38800000U) {  // normal half: rebias the exponent, round the 13 dropped bits
    const std::uint32_t odd = (magnitude >> 13) & 1U;
    return static_cast<std::uint16_t>(sign | ((magnitude + 0xFFFU + odd - 0x38000000U) >> 13));
  }
  const std::uint32_t exponent = magnitude >> 23;
  if (exponent < 102) return sign;  // below 2^-25: rounds to zero
  // Subnormal half: the result counts units of 2^-24; shift the full mantissa down, round to even.
  const std::uint32_t mantissa = (magnitude & 0x7FFFFFU) | 0x800000U;
  const std::uint32_t shift = 126 - exponent;  // 14..24
  std::uint32_t result = mantissa >> shift;
  const std::uint32_t remainder = mantissa & ((1U << shift) - 1U);
  const std::uint32_t halfway = 1U << (shift - 1);
  if (remainder > halfway || (remainder == halfway && (result & 1U) != 0)) ++result;
  return static_cast<std::uint16_t>(sign | result);
}

/// bfloat16 -> float: the top half of a float's bits, so exact for every input.
inline float bfloat16_to_float(std::uint16_t b) {
  return detail::bits_float(static_cast<std::uint32_t>(b) << 16);
}

/// float -> bfloat16, rounding to nearest even; NaN stays a quiet NaN.
inline std::uint16_t float_to_bfloat16(float f) {
  const std::uint32_t bits = detail::float_bits(f);
  if ((bits & 0x7FFFFFFFU) > 0x7F800000U) return static_cast<std::uint16_t>((bits >> 16) | 0x40U);
  const std::uint32_t odd = (bits >> 16) & 1U;
  return static_cast<std::uint16_t>((bits + 0x7FFFU + odd) >> 16);
}

/// float8 e5m2 (safetensors F8_E5M2) -> float: the top byte of a binary16, so exact.
inline float float8_e5m2_to_float(std::uint8_t b) {
  return half_to_float(static_cast<std::uint16_t>(b << 8));
}

/// float8 e4m3fn (safetensors F8_E4M3: bias 7, no infinities, S.1111.111 is NaN, max 448) -> float.
inline float float8_e4m3_to_float(std::uint8_t b) {
  const bool negative = (b & 0x80U) != 0;
  const int exponent = (b >> 3) & 0xF;
  const int mantissa = b & 0x7;
  float magnitude = 0.0F;
  if (exponent == 0xF && mantissa == 0x7)
    magnitude = std::nanf("");
  else if (exponent == 0)  // subnormal: mantissa * 2^-9
    magnitude = std::ldexp(static_cast<float>(mantissa), -9);
  else
    magnitude = std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);
  return negative ? -magnitude : magnitude;
}

}  // namespace shareformer::io
