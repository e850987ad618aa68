// SMTP DATA (RFC 5321 §4.1.1.4): the work after the gates and check_data (commands.cpp) passed —
// reading the message through the DataReader (data_reader.h decides, this reads, times out and
// rate-limits), streamed as it arrives into a temp file per destination (every local Maildir,
// the spool), published at the final dot.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "shared/log.h"
#include "shared/maildir.h"
#include "shared/net/errors.h"
#include "shared/net/limits.h"
#include "shared/spool.h"
#include "smtpd/data_reader.h"
#include "smtpd/limits.h"
#include "smtpd/received.h"
#include "smtpd/session.h"

namespace rg::smtp {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

// One message's destinations while it arrives: one temp file per destination, fed chunk by
// chunk, all published (renamed into place) only after the final dot and every check.
// One file per destination rather than hard links: the spool copy starts with Received: alone
// and a Maildir copy with Return-Path: too, so at most the Maildir copies could share an inode;
// they may sit on different filesystems (a user's Maildir symlinked elsewhere, per-user
// quotas, where a link would fail or charge one user for all), and writing each copy is what
// the delivery always did. Publishing is all-or-nothing for the client: every file is fsync'd
// before the first rename, and when one rename (or its folder's fsync) fails the copies
// already published are unlinked again before the 4xx, so a retry cannot deliver twice; a
// crash before the 250 leaves only temp files (never delivered; the spool's start-up recovery
// removes its own), and a crash between two renames of one message at most delivers a copy the
// client was not told about (RFC 5321 §6.1: duplicate rather than lose).
// Every member function blocks (open, write, fsync, rename): only ever called on the disk
// pool, one job at a time (the session awaits each), never on the I/O thread.
class Delivery {
 public:
  Delivery(std::filesystem::path root, spool::Spool spool, std::vector<std::string> local_users, spool::Envelope env,
           std::string return_path, std::string received)
      : root_(std::move(root)),
        spool_(std::move(spool)),
        users_(std::move(local_users)),
        env_(std::move(env)),
        return_path_(std::move(return_path)),
        received_(std::move(received)) {}

  // Creates the temp files and writes the trace headers, known before the first body byte.
  void open() {
    for (const auto& u : users_) {
      maildir::Maildir md(root_, u);
      md.ensure();
      maildirs_.emplace_back(md);
      maildirs_.back().write(return_path_);
      maildirs_.back().write(received_);
    }
    if (!env_.recipients.empty()) {
      queued_.emplace(spool_, env_.id);
      queued_->write(received_);
    }
  }
  void write(std::string_view chunk) {
    for (auto& m : maildirs_) m.write(chunk);
    if (queued_) queued_->write(chunk);
  }
  // fsync everything, then publish everything; on failure nothing stays published.
  void publish(uint64_t body_size) {
    env_.size = received_.size() + body_size;
    for (auto& m : maildirs_) m.sync();
    if (queued_) queued_->sync(env_);
    size_t published = 0;
    try {
      for (; published < maildirs_.size(); ++published) maildirs_[published].publish();
      if (queued_) queued_->publish();
    } catch (...) {
      for (size_t i = 0; i < published; ++i) maildirs_[i].unpublish();
      throw;
    }
  }
  // Removes every temp file (their destructors unlink what was not published).
  void abort() {
    maildirs_.clear();
    queued_.reset();
  }
  const spool::Envelope& envelope() const { return env_; }
  size_t local_count() const { return users_.size(); }

 private:
  std::filesystem::path root_;
  spool::Spool spool_;
  std::vector<std::string> users_;
  spool::Envelope env_;
  std::string return_path_, received_;
  std::vector<maildir::Incoming> maildirs_;
  std::optional<spool::Incoming> queued_;
};

namespace {

// What a disk job reports instead of throwing across the pool: errno (0: fine) and the text.
struct DiskResult {
  int err = 0;
  std::string error;
};

// Runs `step` on the Delivery on the disk pool; on failure the temp files are removed at once
// (disk space back before the client is answered). A failed Delivery is never touched again.
template <class F>
asio::awaitable<DiskResult> on_disk(net::WorkerPool& pool, std::shared_ptr<Delivery> msg, F step) {
  auto job = [msg, step = std::move(step)]() mutable {
    DiskResult res;
    try {
      step(*msg);
      return res;
    } catch (const std::system_error& e) {
      res.err = e.code().value();
      res.error = e.what();
    } catch (const std::exception& e) {
      res.err = EIO;
      res.error = e.what();
    }
    msg->abort();
    return res;
  };
  co_return co_await pool.run(std::move(job));
}

// Writes the reader's chunk, unless an earlier step failed: then the bytes are discarded and
// reading goes on to the final dot (the client is answered there, as Postfix does).
asio::awaitable<void> store(net::WorkerPool& pool, const std::shared_ptr<Delivery>& msg, DataReader& data,
                            DiskResult& failed) {
  std::string chunk = data.take_chunk();
  if (failed.err || chunk.empty()) co_return;
  auto step = [chunk = std::move(chunk)](Delivery& d) { d.write(chunk); };
  failed = co_await on_disk(pool, msg, std::move(step));
}

asio::awaitable<void> discard(net::WorkerPool& pool, const std::shared_ptr<Delivery>& msg) {
  auto step = [](Delivery& d) { d.abort(); };
  co_await on_disk(pool, msg, std::move(step));
}

}  // namespace

asio::awaitable<void> Session::proceed_data(std::string_view) {
  reply(354, "", "End data with <CR><LF>.<CR><LF>");
  if (!co_await flush()) co_return;
  busy_ = true;
  struct Idle {  // busy_ ends with this command however it ends
    bool& flag;
    ~Idle() { flag = false; }
  } idle_again{busy_};

  // The trace headers are known before the first body byte: they open every temp file.
  const std::string qid = spool::new_queue_id();
  const std::time_t now = std::time(nullptr);
  TraceInput trace{
      helo_, stream_.remote_ip(),      srv_.cfg.hostname, esmtp_, std::nullopt, auth_user_, auth_mech_, relay_by_, {},
      qid,   static_cast<int64_t>(now)};
  if (stream_.is_tls()) trace.tls = stream_.tls_description();
  for (const auto& r : rcpts_) trace.recipients.push_back(r.mailbox.text());
  const std::string sender = from_->null ? "" : from_->mailbox.text();
  TraceHeaders headers = trace_headers(trace, sender);
  std::vector<std::string> local_users;
  spool::Envelope env;
  for (const auto& r : rcpts_) {
    if (r.local) {
      if (std::find(local_users.begin(), local_users.end(), r.user) == local_users.end()) local_users.push_back(r.user);
    } else {
      env.recipients.push_back({r.mailbox.text(), "pending", ""});
    }
  }
  env.id = qid;
  env.sender = sender;
  env.created_at = now;
  env.next_attempt_at = now;
  env.client_ip = stream_.remote_ip();
  env.auth = relay_by_;
  const auto msg = std::make_shared<Delivery>(srv_.cfg.maildir_root, srv_.spool, std::move(local_users), std::move(env),
                                              std::move(headers.return_path), std::move(headers.received));
  auto open = [](Delivery& d) { d.open(); };
  DiskResult failed = co_await on_disk(srv_.disk_pool, msg, std::move(open));

  const uint64_t max_size = static_cast<uint64_t>(srv_.cfg.smtpd.max_message_size);
  const bool normalize = listener_.mode == config::SmtpMode::Relay;
  DataReader data(max_size, normalize);
  const auto timeout = std::chrono::seconds(srv_.cfg.smtpd.data_timeout_seconds);
  // min_data_rate is measured by the stream over every byte of the message, whatever its line
  // structure: a client trickling bytes without a line end is cut as surely as a slow one.
  stream_.set_transfer_rate_floor(rate_floor());
  for (;;) {
    auto [ec, line] = co_await stream_.read_line(limits::kDataRead, timeout);
    if (ec == net::errc::line_too_long) {
      // How the dropped line ended is unknown, so the next line never ends DATA (no
      // smuggling); such a client ends in the data timeout and nothing is accepted.
      data.feed_overlong(limits::kDataRead);
      continue;
    }
    if (ec == net::errc::too_slow) {
      co_await discard(srv_.disk_pool, msg);
      data_aborted_ = "too-slow";
      co_return rate_too_low("data", data.received());
    }
    if (ec) {
      co_await discard(srv_.disk_pool, msg);
      if (ec == net::errc::timeout) reply(421, "4.4.2", srv_.cfg.hostname + " Error: timeout exceeded");
      data_aborted_ = ec == net::errc::timeout ? "timeout"
                      : srv_.stopping()        ? "server-stopping"
                      : ec == asio::error::eof ? "client-closed"
                                               : "read-error";
      log::info(id_)
          .kv("event", "data")
          .kv("outcome", "aborted")
          .kv("reason", data_aborted_)
          .kv("ip", stream_.remote_ip())
          .kv("error", ec.message())
          .kv("bytes", data.received());
      count(false);
      closing_ = true;
      co_return;
    }
    if (data.feed(line) == DataReader::Step::End) break;
    if (data.pending() >= limits::kDataChunk) co_await store(srv_.disk_pool, msg, data, failed);
  }
  co_await store(srv_.disk_pool, msg, data, failed);
  // Every refusal below removes the temp files before the reply.
  const auto refuse = [&]() -> asio::awaitable<void> {
    count(false);
    reset_transaction();
    co_await discard(srv_.disk_pool, msg);
  };
  // RFC 2920 §3.1: without PIPELINING (a HELO session) the client must wait for the reply to
  // the final dot; bytes already behind it are a synchronization error like the other sync points.
  if (!esmtp_ && auth_user_.empty() && stream_.has_pending_input()) {
    co_await refuse();
    co_return co_await sync_error();
  }
  if (data.too_big()) {
    co_await refuse();
    co_return reply(552, "5.3.4", "Error: message file too big");
  }
  if (data.too_long()) {
    co_await refuse();
    co_return reply(500, "5.5.2", "Error: message has a line longer than 998 octets (RFC 5321 §4.5.3.1.6)");
  }
  if (data.bare_line_ending() && !normalize) {
    // Submission clients must send CRLF only (RFC 5321 §2.3.8); refusing avoids smuggling.
    co_await refuse();
    co_return reply(550, "5.5.2", "Error: bare <CR> or <LF> received; use CRLF line endings");
  }
  if (failed.err) {
    count(false);
    log::error(id_).kv("event", "delivery-failed").kv("id", qid).kv("error", failed.error);
    reset_transaction();
    if (failed.err == ENOSPC || failed.err == EDQUOT) co_return reply(452, "4.3.1", "Insufficient system storage");
    co_return reply(451, "4.3.0", "Error: local delivery failed, try again later");
  }
  co_await deliver(msg, data.body_size());
}

// Publishes the message in each local recipient's Maildir and the spool (for the rest) on the
// disk pool, all fsync'd before the 250; any failure removes what was already published so a
// retry by the client cannot deliver twice (Delivery above).
asio::awaitable<void> Session::deliver(std::shared_ptr<Delivery> msg, uint64_t body_size) {
  const spool::Envelope& env = msg->envelope();
  auto publish = [body_size](Delivery& d) { d.publish(body_size); };
  DiskResult res = co_await on_disk(srv_.disk_pool, msg, std::move(publish));
  if (res.err) {
    count(false);
    log::error(id_).kv("event", "delivery-failed").kv("id", env.id).kv("error", res.error);
    reset_transaction();
    if (res.err == ENOSPC || res.err == EDQUOT) co_return reply(452, "4.3.1", "Insufficient system storage");
    co_return reply(451, "4.3.0", "Error: local delivery failed, try again later");
  }
  count(true);
  log::info(id_)
      .kv("event", "queued")
      .kv("id", env.id)
      .kv("from", env.sender.empty() ? "<>" : env.sender)
      .kv("local", msg->local_count())
      .kv("relay", env.recipients.size())
      .kv("size", body_size)
      .kv("by", relay_by_.empty() ? std::string("local") : relay_by_);
  reset_transaction();
  reply(250, "2.0.0", "Ok: queued as " + env.id);
}

}  // namespace rg::smtp
