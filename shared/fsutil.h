// Durable file helpers: atomic replace (temp + fsync + rename + directory fsync) and
// directory creation. Errors are std::system_error naming the path.
#pragma once

#include <filesystem>
#include <string_view>

namespace rg::fsutil {

namespace fs = std::filesystem;

// Replaces `path` with `content` so readers see either the old or the new file, never a
// partial one, and the new content survives a crash once this returns.
void atomic_write(const fs::path& path, std::string_view content, unsigned mode = 0644);

// fsync(2) on a directory, making renames and creations in it durable.
void fsync_dir(const fs::path& dir);

// Creates `dir` and its parents with `mode` (existing ones are left as they are).
void make_dirs(const fs::path& dir, unsigned mode = 0755);

}  // namespace rg::fsutil
