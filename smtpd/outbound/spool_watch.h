// The spool watch's parser: the bytes one read(2) of an inotify descriptor returned, as events.
// Pure (no descriptor, no Asio) so it is tested without a socket or a kernel; the runner's
// watcher coroutine only reads and acts on the result.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rg::smtp::queue {

struct WatchEvent {
  uint32_t mask = 0;  // IN_* bits (inotify(7))
  std::string name;   // file name in the watched directory, NUL padding removed ("" for none)
  bool operator==(const WatchEvent&) const = default;
};

// Every complete event in `bytes` (struct inotify_event + len name bytes, inotify(7)). An event
// whose header or name runs past the end of the buffer is dropped: the kernel returns whole
// events only, so a short buffer means a damaged read, not a name to act on.
std::vector<WatchEvent> parse_inotify_events(std::string_view bytes);

}  // namespace rg::smtp::queue
