// SPDX-License-Identifier: MIT
// shareformer: inspect, run and benchmark transformer encoders with cross-layer parameter sharing.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <exception>
#include <new>
#include <shareformer/core/error.hpp>
#include <shareformer/version.hpp>
#include <string>

#include "commands.hpp"

#if defined(SHAREFORMER_USE_BLAS)
extern "C" void openblas_set_num_threads(int);
#endif

namespace {

// Errors are one line on stderr: "shareformer: error: <message>".
int fail(int status, std::string message) {
  std::replace(message.begin(), message.end(), '\n', ' ');
  std::fprintf(stderr, "shareformer: error: %s\n", message.c_str());
  return status;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(SHAREFORMER_USE_BLAS)
  // The library splits every product over its own threads; OpenBLAS threading on top would
  // oversubscribe the cores.
  openblas_set_num_threads(1);
#endif
  namespace cli = shareformer::cli;
  CLI::App app("shareformer: transformer encoders with cross-layer parameter sharing",
               "shareformer");
  app.set_version_flag("--version",
                       fmt::format("shareformer {}.{}.{}", SHAREFORMER_VERSION_MAJOR,
                                   SHAREFORMER_VERSION_MINOR, SHAREFORMER_VERSION_PATCH));
  app.require_subcommand(1);

  cli::InfoCommand info;
  cli::RunCommand run;
  cli::BenchCommand bench;
  CLI::App* info_app = info.add(app);
  CLI::App* run_app = run.add(app);
  CLI::App* bench_app = bench.add(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success))
      return app.exit(e);  // --help, --version
    return fail(2, std::string(e.what()) + " (see --help)");
  }

  try {
    if (info_app->parsed()) return info.run();
    if (run_app->parsed()) return run.run();
    if (bench_app->parsed()) return bench.run();
    return fail(2, "no command given (see --help)");
  } catch (const cli::UsageError& e) {
    return fail(2, std::string(e.what()) + " (see --help)");
  } catch (const shareformer::Error& e) {
    return fail(1, e.what());
  } catch (const std::bad_alloc&) {
    return fail(1, "out of memory");
  } catch (const std::exception& e) {
    return fail(1, e.what());
  }
}
