// See maildrop.h.
#include "pop3d/maildrop.h"

#include <unistd.h>

#include <cerrno>

namespace rg::pop3 {

std::optional<Maildrop> Maildrop::open(const std::filesystem::path& root, const std::string& user) {
  maildir::Maildir md(root, user);
  md.ensure();
  auto lock = md.try_lock();
  if (!lock) return std::nullopt;
  Maildrop drop(std::move(md), std::move(*lock));
  for (auto& e : drop.maildir_.scan()) drop.messages_.push_back(Message{std::move(e), false});
  return drop;
}

Message* Maildrop::find(uint64_t number) {
  if (number == 0 || number > messages_.size() || messages_[number - 1].deleted) return nullptr;
  return &messages_[number - 1];
}

Maildrop::Totals Maildrop::live() const {
  Totals t;
  for (const auto& m : messages_)
    if (!m.deleted) ++t.count, t.octets += m.entry.size;
  return t;
}

Maildrop::Totals Maildrop::all() const {
  Totals t;
  for (const auto& m : messages_) ++t.count, t.octets += m.entry.size;
  return t;
}

void Maildrop::reset() {
  for (auto& m : messages_) m.deleted = false;
}

void Maildrop::mark_seen(Message& m) {
  if (m.entry.seen) return;
  m.entry.file = maildir_.mark_seen(m.entry);
  m.entry.seen = true;
}

Maildrop::Commit Maildrop::commit() {
  Commit c;
  for (const auto& m : messages_) {
    if (!m.deleted) continue;
    if (::unlink(m.entry.file.c_str()) == 0 || errno == ENOENT)
      ++c.removed;
    else
      ++c.failed;
  }
  lock_.reset();
  return c;
}

}  // namespace rg::pop3
