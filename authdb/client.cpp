// See client.h.
#include "authdb/client.h"

#include <boost/asio/post.hpp>

#include "shared/log.h"

namespace rg::authdb {

Client::Client(StoreFactory factory, std::string name, std::chrono::milliseconds limit, size_t read_threads,
               size_t write_threads)
    : factory_(std::move(factory)), name_(std::move(name)), limit_(limit) {
  std::unique_ptr<Store> first;
  try {
    first = factory_();  // throws Error: the daemon does not start
  } catch (const Unavailable& e) {
    // A database server that is down (PostgreSQL) is not a configuration error: the daemon runs
    // and answers a temporary failure, and the first job after the server is back connects.
    log::warn()
        .kv("event", "database-unavailable")
        .kv("database", name_)
        .kv("reason", e.what())
        .kv("action", "starting anyway; sessions get a temporary failure until it answers");
  }
  for (size_t i = 0; i < write_threads; ++i)
    threads_.emplace_back(&Client::worker, this, std::ref(write_q_), i == 0 ? std::move(first) : nullptr);
  for (size_t i = 0; i < read_threads; ++i) threads_.emplace_back(&Client::worker, this, std::ref(read_q_), nullptr);
}

Client::~Client() {
  stopping_.store(true);
  for (Queue* q : {&read_q_, &write_q_}) {
    std::lock_guard lock(q->mu);
    q->cv.notify_all();
  }
  for (auto& t : threads_) t.join();
}

void Client::submit(Lane lane, Job job) {
  Queue& q = lane == Lane::Read ? read_q_ : write_q_;
  {
    std::lock_guard lock(q.mu);
    q.jobs.push_back(std::move(job));
  }
  q.cv.notify_one();
}

void Client::complete(const std::shared_ptr<Op>& op) {
  // Posted to the waiter's executor: the result written on the database thread happens-before
  // this handler (the executor's queue synchronizes), and `done`/`timer` stay single-threaded.
  boost::asio::post(op->executor, [op] {
    op->done = true;
    if (op->timer) op->timer->cancel();
  });
}

void Client::timed_out(const char* what) const {
  throw Timeout("database " + name_ + ": " + what + " failed: timeout, no answer within " +
                std::to_string(limit_.count()) + " ms");
}

void Client::worker(Queue& q, std::unique_ptr<Store> store) {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(q.mu);
      q.cv.wait(lock, [&] { return stopping_.load() || !q.jobs.empty(); });
      if (stopping_.load()) return;
      job = std::move(q.jobs.front());
      q.jobs.pop_front();
    }
    // The waiter gave up (or is about to): running now would answer nobody and, for a write,
    // commit something the client was already told failed.
    if (job.op->abandoned.load() || std::chrono::steady_clock::now() >= job.deadline) {
      ++skipped_;
      continue;
    }
    try {
      if (!store) store = factory_();
      job.work(*store);
    } catch (const Error&) {
      job.op->error = std::current_exception();
      store.reset();  // reopen for the next job: the fault may be a replaced or repaired file
    } catch (...) {
      job.op->error = std::current_exception();
    }
    complete(job.op);
  }
}

}  // namespace rg::authdb
