// Logging: a thin layer over spdlog so that every component logs the same way.
// Use SLOG_INFO("start instance {}: {}", id, status.toString()). Thread-safe.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

#define SLOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define SLOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define SLOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define SLOG_ERROR(...) ::spdlog::error(__VA_ARGS__)

namespace stratus {
// Sets the process-wide level from "debug", "info", "warn", "error". Called once by main.
void initLogging(std::string_view level);
}  // namespace stratus
