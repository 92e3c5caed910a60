// SPDX-License-Identifier: MIT
// Umbrella header: includes every public header of shareformer.
#pragma once

#include <shareformer/version.hpp>

#include <shareformer/core/batch.hpp>
#include <shareformer/core/config.hpp>
#include <shareformer/core/encoder_config.hpp>
#include <shareformer/core/error.hpp>
#include <shareformer/core/huge_pages.hpp>
#include <shareformer/core/parallel.hpp>
#include <shareformer/core/types.hpp>

#include <shareformer/ops/activation.hpp>
#include <shareformer/ops/attention.hpp>
#include <shareformer/ops/bf16_dot.hpp>
#include <shareformer/ops/gemm.hpp>
#include <shareformer/ops/layer_norm.hpp>
#include <shareformer/ops/linear.hpp>
#include <shareformer/ops/packed_matrix.hpp>
#include <shareformer/ops/softmax.hpp>

#include <shareformer/layers/attention.hpp>
#include <shareformer/layers/feed_forward.hpp>
#include <shareformer/layers/layer_norm.hpp>
#include <shareformer/layers/linear.hpp>
#include <shareformer/layers/transformer_block.hpp>
#include <shareformer/layers/workspace.hpp>

#include <shareformer/sharing/policies.hpp>

#include <shareformer/count/accounting.hpp>

#include <shareformer/models/encoder.hpp>
#include <shareformer/models/stack.hpp>

#include <shareformer/io/huggingface.hpp>
#include <shareformer/io/model_io.hpp>
