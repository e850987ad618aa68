// See spool_watch.h.
#include "smtpd/outbound/spool_watch.h"

#include <sys/inotify.h>

#include <cstring>

namespace rg::smtp::queue {

std::vector<WatchEvent> parse_inotify_events(std::string_view bytes) {
  std::vector<WatchEvent> out;
  size_t off = 0;
  while (bytes.size() - off >= sizeof(inotify_event)) {
    inotify_event ev;
    std::memcpy(&ev, bytes.data() + off, sizeof ev);  // the buffer need not be aligned
    off += sizeof ev;
    if (ev.len > bytes.size() - off) break;  // truncated name
    std::string_view name = bytes.substr(off, ev.len);
    name = name.substr(0, name.find('\0'));  // the kernel pads names with NULs
    out.push_back({ev.mask, std::string(name)});
    off += ev.len;
  }
  return out;
}

}  // namespace rg::smtp::queue
