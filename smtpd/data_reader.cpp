// See data_reader.h.
#include "smtpd/data_reader.h"

namespace rg::smtp {

DataReader::DataReader(uint64_t max_size, bool normalize_bare_cr)
    : max_size_(max_size), normalize_(normalize_bare_cr) {}

void DataReader::feed_overlong(size_t dropped) {
  too_long_ = true;
  prev_crlf_ = false;
  received_ += dropped;
}

DataReader::Step DataReader::feed(std::string_view line) {
  received_ += line.size();
  if (line.size() > kMaxTextLine) too_long_ = true;
  const bool crlf = line.size() >= 2 && line[line.size() - 2] == '\r';
  // RFC 5321 §4.1.1.4: only CRLF "." CRLF ends the data.
  if (crlf && prev_crlf_ && line == ".\r\n") return Step::End;
  const size_t ending = crlf ? 2 : (!line.empty() && line.back() == '\n' ? 1 : 0);
  std::string_view content = line.substr(0, line.size() - ending);
  if (!crlf) bare_ = true;
  if (content.find('\r') != std::string_view::npos) bare_ = true;
  if (!content.empty() && content.front() == '.') content.remove_prefix(1);  // §4.5.2 transparency
  if (!too_big_) {
    const size_t before = chunk_.size();
    if (normalize_) {
      // A bare CR becomes a line break (relay listeners only); lines without one are copied whole.
      for (size_t cr; (cr = content.find('\r')) != std::string_view::npos; content.remove_prefix(cr + 1))
        chunk_.append(content.substr(0, cr)).append("\r\n");
    }
    chunk_.append(content).append("\r\n");
    body_size_ += chunk_.size() - before;
    if (body_size_ > max_size_) {
      too_big_ = true;
      chunk_.clear();
      chunk_.shrink_to_fit();
    }
  }
  prev_crlf_ = crlf;
  return Step::More;
}

}  // namespace rg::smtp
