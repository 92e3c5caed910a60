// SPDX-License-Identifier: MIT
// The library's version; CMake reads these three lines.
#pragma once

#define SHAREFORMER_VERSION_MAJOR 0
#define SHAREFORMER_VERSION_MINOR 1
#define SHAREFORMER_VERSION_PATCH 0
