// A file written piece by piece as its content arrives (a message during SMTP DATA), made
// visible only when complete: created in a temp folder (O_EXCL: never someone else's file),
// appended to, fsync'd and closed by sync(), then renamed into place by publish(). Until
// publish() succeeds nothing exists at the destination; the destructor unlinks the temp file
// of a write that was not published, so an aborted write leaves nothing behind. Blocking
// calls: run them on a worker pool, never on an I/O thread. Errors are std::system_error
// naming the path ("cannot create|write|fsync|close <tmp>", "cannot rename into <dst>").
#pragma once

#include <filesystem>
#include <string_view>

#include "shared/fd.h"

namespace rg::fsutil {

class StreamFile {
 public:
  StreamFile() = default;
  // Creates `tmp` (mode 0600 less the umask); throws on error.
  explicit StreamFile(std::filesystem::path tmp, unsigned mode = 0600);
  StreamFile(StreamFile&&) noexcept;
  StreamFile& operator=(StreamFile&&) noexcept;
  ~StreamFile();

  const std::filesystem::path& tmp() const { return tmp_; }
  bool open() const { return static_cast<bool>(fd_); }

  void write(std::string_view data);
  // fsync and close: the content is durable under its temp name.
  void sync();
  // Renames the synced file to `dst` (same filesystem). The caller fsyncs dst's folder.
  void publish(const std::filesystem::path& dst);
  // Unlinks the temp file if it was not published (the destructor does too).
  void discard() noexcept;

 private:
  std::filesystem::path tmp_;
  Fd fd_;
  bool pending_ = false;  // tmp_ exists and is ours to remove
};

}  // namespace rg::fsutil
