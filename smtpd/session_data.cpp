// SMTP DATA (RFC 5321 §4.1.1.4): the work after the gates and check_data (commands.cpp) passed —
// reading the message through the DataReader (data_reader.h decides, this reads, times out and
// rate-limits), then the delivery into every local Maildir and the spool.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <memory>
#include <system_error>

#include "shared/log.h"
#include "shared/maildir.h"
#include "shared/net/errors.h"
#include "shared/spool.h"
#include "smtpd/data_reader.h"
#include "smtpd/limits.h"
#include "smtpd/received.h"
#include "smtpd/session.h"

namespace rg::smtp {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

asio::awaitable<void> Session::proceed_data(std::string_view) {
  reply(354, "", "End data with <CR><LF>.<CR><LF>");
  if (!co_await flush()) co_return;
  busy_ = true;
  struct Idle {  // busy_ ends with this command however it ends
    bool& flag;
    ~Idle() { flag = false; }
  } idle_again{busy_};

  const uint64_t max_size = static_cast<uint64_t>(srv_.cfg.smtpd.max_message_size);
  const bool normalize = listener_.mode == config::SmtpMode::Relay;
  DataReader data(max_size, normalize,
                  static_cast<size_t>(std::min<uint64_t>(
                      declared_size_ ? declared_size_ + limits::kDataReserveSlack : limits::kDataReserve,
                      max_size + limits::kDataReserveSlack)));
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
    if (ec == net::errc::too_slow) co_return rate_too_low("data", data.received());
    if (ec) {
      if (ec == net::errc::timeout) reply(421, "4.4.2", srv_.cfg.hostname + " Error: timeout exceeded");
      log::info(id_)
          .kv("event", "data")
          .kv("outcome", "aborted")
          .kv("error", ec.message())
          .kv("bytes", data.received());
      count(false);
      closing_ = true;
      co_return;
    }
    if (data.feed(line) == DataReader::Step::End) break;
  }
  // RFC 2920 §3.1: without PIPELINING (a HELO session) the client must wait for the reply to
  // the final dot; bytes already behind it are a synchronization error like the other sync points.
  if (!esmtp_ && auth_user_.empty() && stream_.has_pending_input()) {
    count(false);
    reset_transaction();
    co_return co_await sync_error();
  }
  if (data.too_big()) {
    count(false);
    reset_transaction();
    co_return reply(552, "5.3.4", "Error: message file too big");
  }
  if (data.too_long()) {
    count(false);
    reset_transaction();
    co_return reply(500, "5.5.2", "Error: message has a line longer than 998 octets (RFC 5321 §4.5.3.1.6)");
  }
  if (data.bare_line_ending() && !normalize) {
    // Submission clients must send CRLF only (RFC 5321 §2.3.8); refusing avoids smuggling.
    count(false);
    reset_transaction();
    co_return reply(550, "5.5.2", "Error: bare <CR> or <LF> received; use CRLF line endings");
  }
  const auto body = std::make_shared<const std::string>(data.take_body());
  co_await deliver(body);
}

// Writes the message into each local recipient's Maildir and the spool (for the rest) on the
// disk pool, all fsync'd before the 250; any failure removes what was already written so a
// retry by the client cannot deliver twice.
asio::awaitable<void> Session::deliver(std::shared_ptr<const std::string> body) {
  const std::string qid = spool::new_queue_id();
  const std::time_t now = std::time(nullptr);
  TraceInput trace{
      helo_, stream_.remote_ip(),      srv_.cfg.hostname, esmtp_, std::nullopt, auth_user_, auth_mech_, relay_by_, {},
      qid,   static_cast<int64_t>(now)};
  if (stream_.is_tls()) trace.tls = stream_.tls_description();
  for (const auto& r : rcpts_) trace.recipients.push_back(r.mailbox.text());
  const std::string sender = from_->null ? "" : from_->mailbox.text();
  const TraceHeaders headers = trace_headers(trace, sender);
  const std::string& received = headers.received;
  const std::string& return_path = headers.return_path;

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
  env.size = received.size() + body->size();
  env.client_ip = stream_.remote_ip();
  env.auth = relay_by_;

  struct Result {
    int err = 0;
    std::string error;
  };
  auto job = [root = srv_.cfg.maildir_root, spool = srv_.spool, local_users, env, body, received, return_path]() {
    Result res;
    std::vector<std::filesystem::path> written;
    try {
      for (const auto& u : local_users) {
        maildir::Maildir md(root, u);
        md.ensure();
        written.push_back(md.deliver({return_path, received, *body}));
      }
      if (!env.recipients.empty()) spool.enqueue(env, {received, *body});
    } catch (const std::system_error& e) {
      res.err = e.code().value();
      res.error = e.what();
    } catch (const std::exception& e) {
      res.err = EIO;
      res.error = e.what();
    }
    if (res.err)
      for (const auto& p : written) ::unlink(p.c_str());
    return res;
  };
  Result res = co_await srv_.disk_pool.run(job);
  if (res.err) {
    count(false);
    log::error(id_).kv("event", "delivery-failed").kv("id", qid).kv("error", res.error);
    reset_transaction();
    if (res.err == ENOSPC || res.err == EDQUOT) co_return reply(452, "4.3.1", "Insufficient system storage");
    co_return reply(451, "4.3.0", "Error: local delivery failed, try again later");
  }
  count(true);
  log::info(id_)
      .kv("event", "queued")
      .kv("id", qid)
      .kv("from", sender.empty() ? "<>" : sender)
      .kv("local", local_users.size())
      .kv("relay", env.recipients.size())
      .kv("size", body->size())
      .kv("by", relay_by_.empty() ? std::string("local") : relay_by_);
  reset_transaction();
  reply(250, "2.0.0", "Ok: queued as " + qid);
}

}  // namespace rg::smtp
