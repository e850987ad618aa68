// File helpers: the one read loop and write loop (EINTR, short counts), the one durable writer
// (write all, fsync, rename, fsync the directory) that Maildir delivery, the spool, the status
// file and the TLS key generation use, directory and file creation, optionally owned by another
// user (root creating files for the service user). Errors are std::system_error naming the path.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

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

// read(2) resumed after EINTR: bytes read, 0 at end of file, -1 with errno on error.
ssize_t read_some(int fd, char* buf, size_t size);
// Appends everything up to end of file to `out`. False with errno set on a read error; `out`
// then holds what was read before it.
bool read_all(int fd, std::string& out);
// The whole file (opened O_RDONLY | O_CLOEXEC). Throws std::system_error "cannot open <path>"
// or "cannot read <path>" (code ENOENT when it does not exist).
std::string read_file(const fs::path& path);

// Writes every byte, resuming after short writes and EINTR. False with errno set on error.
bool write_all(int fd, std::string_view data);
bool write_all(int fd, std::span<const std::string_view> pieces);

// One file of a durable write: created as `tmp` (O_EXCL: never someone else's file), renamed
// to `dst`, which must be on the same filesystem.
struct DurableFile {
  fs::path tmp;
  fs::path dst;
  std::vector<std::string_view> pieces;  // the content, concatenated
};

struct DurableOptions {
  unsigned mode = 0600;        // creation mode (umask applies unless exact_mode)
  bool exact_mode = false;     // fchmod to `mode` whatever the umask (private keys)
  std::optional<Owner> owner;  // fchown before the file becomes visible at dst
  // For files whose presence means "accepted" (a delivered message, a queued envelope): when a
  // later step fails (a later rename, the directory fsync) the files already renamed into place
  // are unlinked again, so nothing that was not acknowledged is found and processed later.
  // Without it a renamed file stays: it is complete, only its durability is in doubt.
  bool undo_on_failure = false;
};

// The one durable writer. Each file: create tmp, write all, fsync, close; then the renames in
// the order given (readers that look for the last file see the earlier ones complete); then
// one fsync of each destination directory. Throws std::system_error naming the path
// ("cannot create|write|fsync|close <tmp>", "cannot change the owner of <tmp>", "cannot rename
// into <dst>", "cannot fsync directory <dir>"); after an error no temp file is left, and
// renamed files only as DurableOptions::undo_on_failure says.
void write_durably(std::span<const DurableFile> files, const DurableOptions& options);
void write_durably(const fs::path& tmp, const fs::path& dst, std::vector<std::string_view> pieces,
                   const DurableOptions& options);

// Replaces `path` with `content` so readers see either the old or the new file, never a
// partial one, and the new content survives a crash once this returns. With `owner`, the file
// is chowned before it replaces the old one. The temp file is ".<name>.tmp.<pid>.<n>" beside it.
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
