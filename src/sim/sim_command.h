// `stratus sim`: replays an Azure Functions trace (or a synthetic one) through the scheduler on
// a simulated cluster and prints what it cost (text, or --json).
#pragma once

#include <CLI/CLI.hpp>

namespace stratus {

void addSimCommand(CLI::App& app);

}  // namespace stratus
