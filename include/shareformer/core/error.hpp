// SPDX-License-Identifier: MIT
// Typed exceptions thrown by shareformer for every error a caller can cause.
#pragma once

#include <stdexcept>
#include <string>

namespace shareformer {

/// Base of every exception the library throws; `what()` says where, what was expected and what
/// came.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// An invalid configuration: sizes, policies, layer maps, hyper-parameters.
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// An input or tensor whose shape does not match what the model expects.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A file or byte stream that breaks its format's rules (safetensors, config.json, ...).
class FormatError : public Error {
 public:
  using Error::Error;
};

/// An operating-system failure while reading or writing a file (open, map, rename, ...).
class IoError : public Error {
 public:
  using Error::Error;
};

}  // namespace shareformer
