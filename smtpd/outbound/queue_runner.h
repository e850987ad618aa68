// The queue runner inside smtpd: delivers the spool to the smarthost, retries, bounces.
// It lives in smtpd because smtpd writes the spool and already owns what delivery needs (the
// I/O thread, the worker pool for fsync, authdb to tell local senders, Maildir delivery for
// their DSNs); one process means one unit, one privilege set, and new mail is noticed at once.
// Scheduling: an index id → (next attempt, held, busy) fed by a full scan at start-up and
// every queue.scan_interval_seconds and by inotify on queue/ (smtpd's enqueues, relaygatectl's
// flush/hold/release/delete); up to queue.max_connections connections, each carrying due
// messages one after another. Per message: lock (flock) → attempt → persist (queue_store.h).
// Duplicate window: from the smarthost's 250 to the final "." until the envelope update or
// removal is fsync'd (milliseconds); a crash inside it sends that message again on restart.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "authdb/client.h"
#include "shared/config.h"
#include "shared/net/limits.h"
#include "shared/spool.h"
#include "smtpd/outbound/queue_plan.h"
#include "smtpd/outbound/queue_policy.h"
#include "smtpd/outbound/queue_store.h"
#include "smtpd/outbound/smtp_client.h"

namespace rg::smtp {

class QueueRunner {
 public:
  // Reads the smarthost password file and builds the TLS context: throws ConfigError /
  // std::runtime_error naming the file on a problem (a start-up error).
  QueueRunner(boost::asio::io_context& io, const config::Config& cfg, authdb::Client& db, net::WorkerPool& pool);
  ~QueueRunner();
  QueueRunner(const QueueRunner&) = delete;
  QueueRunner& operator=(const QueueRunner&) = delete;

  // Start-up recovery of the spool (blocking; before smtpd accepts mail), then delivery.
  void start();
  // Stops taking new work; an attempt in flight finishes (or ends with the io_context, which
  // is crash-safe too) and its connection QUITs.
  void stop();
  // Connections to the smarthost still open (for a drain on SIGTERM).
  size_t active() const { return connections_; }
  // SIGHUP: new smarthost settings (password file and CA re-read) and retry policy for the
  // next connections. Throws, changing nothing, if a file cannot be read. `fresh` must still
  // have a smarthost (adding or removing one needs a restart).
  void reload(const config::Config& fresh);
  // Wakes the dispatcher (new mail, a flush).
  void kick();
  // Called on the I/O thread when the watch on queue/ sees an envelope arrive or go (smtpd's
  // enqueues, deliveries, relaygatectl): smtpd refreshes the queue summary and the status file.
  std::function<void()> on_change;

 private:
  using Item = queue::Slot;
  struct Job {
    queue::Loaded loaded;
    std::vector<queue::Outcome> outcomes;
    bool attempted = false;
  };

  boost::asio::awaitable<void> dispatcher();
  boost::asio::awaitable<void> watcher();
  boost::asio::awaitable<void> rescan();
  boost::asio::awaitable<void> connection();
  boost::asio::awaitable<void> process(client::Client& client, std::optional<client::Reply>& down, std::string id);
  boost::asio::awaitable<void> finish(Job& job, const client::Client& client);
  // Looks up a local sender on authdb's read lane (a DSN to them goes to their Maildir).
  boost::asio::awaitable<queue::Plan> plan(const spool::Envelope& env, const std::string& message, int64_t now);
  static std::shared_ptr<const client::Options> make_options(const config::Config& cfg);
  void release(const std::string& id, int64_t next, bool held = false);
  void log_events(const spool::Envelope& env, const std::vector<queue::Event>& events, const client::Client& client,
                  int64_t now) const;

  boost::asio::io_context& io_;
  const config::Config& cfg_;
  authdb::Client& db_;
  net::WorkerPool& pool_;
  spool::Spool spool_;
  queue::Policy policy_;
  config::Queue limits_;                            // connections, messages per connection, scan
  std::shared_ptr<const client::Options> options_;  // each connection keeps the one it started with
  std::map<std::string, Item> items_;
  std::deque<std::string> ready_;
  std::map<std::string, spool::Envelope> unsaved_;  // attempted, not yet persisted (disk full)
  size_t connections_ = 0;
  std::vector<boost::asio::steady_timer*> idle_;  // linger timers of idle connections
  boost::asio::steady_timer wake_;
  bool kicked_ = false;
  bool stopping_ = false;
  int64_t next_scan_ = 0;
  struct Watch;  // inotify descriptor on queue/ (defined in the .cpp: Asio's type is a typedef)
  std::unique_ptr<Watch> inotify_;
};

}  // namespace rg::smtp
