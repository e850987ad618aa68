// Durable file helpers: atomic replace (temp + fsync + rename + directory fsync), directory
// and file creation, optionally owned by another user (root creating files for the service
// user). Errors are std::system_error naming the path.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace rg::fsutil {

namespace fs = std::filesystem;

// Who should own what a root process creates for a service user.
struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
};

// The uid and gid of `user` (and of `group`, or the user's primary group when `group` is
// empty); nullopt when the user or the group does not exist.
std::optional<Owner> lookup_owner(const std::string& user, const std::string& group = "");

// lookup_owner(user, group) when this process runs as root (euid 0), else nullopt: only root
// can give files away, and for anyone else the creator owning the file is what is wanted.
std::optional<Owner> owner_when_root(const std::string& user, const std::string& group = "");

// Replaces `path` with `content` so readers see either the old or the new file, never a
// partial one, and the new content survives a crash once this returns. With `owner`, the file
// is chowned before it replaces the old one.
void atomic_write(const fs::path& path, std::string_view content, unsigned mode = 0644,
                  const std::optional<Owner>& owner = std::nullopt);

// fsync(2) on a directory, making renames and creations in it durable.
void fsync_dir(const fs::path& dir);

// Creates `dir` and its parents with `mode` (existing ones are left as they are).
void make_dirs(const fs::path& dir, unsigned mode = 0755);

// make_dirs, and every folder it creates (only those) is chowned to `owner` when given.
void create_directories_owned(const fs::path& dir, const std::optional<Owner>& owner, unsigned mode = 0755);

// Creates the empty file `path` with `mode` unless it exists (then nothing changes), chowned to
// `owner` when given. True when this call created it.
bool create_file_owned(const fs::path& path, const std::optional<Owner>& owner, unsigned mode = 0640);

}  // namespace rg::fsutil
