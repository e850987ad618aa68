// authdb::Client: how a daemon reaches its database without ever blocking its I/O thread
// (issue 11). Jobs run on database threads, each with its own Store (connection) made by the
// daemon's factory; the I/O thread's coroutine awaits the result with a time limit
// (database_timeout_ms). Two lanes: reads (find_user, live_grant, status snapshots) on their own
// threads, so that a WAL reader never queues behind a write waiting for another process's lock;
// writes on one thread (SQLite has one writer; a PostgreSQL Store may take more).
// Invariants: a job whose waiter already gave up (its deadline passed before a thread took it)
// is skipped, not run late; a Store that raised authdb::Error is dropped and the thread opens a
// fresh one for its next job (so a database put back after a fault is used again); a timeout is
// an authdb::Timeout (an authdb::Error), which callers treat as any database fault.
// The Client must be destroyed before the io_context its callers run on (Server members are).
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "authdb/store.h"

namespace rg::authdb {

// The waiter's time limit passed before the database answered.
class Timeout : public Error {
 public:
  using Error::Error;
};

using StoreFactory = std::function<std::unique_ptr<Store>()>;

enum class Lane { Read, Write };

class Client {
 public:
  static constexpr size_t kReadThreads = 2;   // WAL readers run side by side
  static constexpr size_t kWriteThreads = 1;  // one writer at a time anyway (SQLite)

  // `name` names the database in messages. The first Store is made here, on the caller's thread,
  // so a database that cannot be opened (Error) stops the daemon at start as before; it becomes
  // the write lane's connection. The others are made on their threads, at their first job. A
  // server that cannot be reached (Unavailable, PostgreSQL) is logged as a warning instead and
  // the daemon runs: every job fails with that error until a thread's next open succeeds.
  Client(StoreFactory factory, std::string name, std::chrono::milliseconds limit, size_t read_threads = kReadThreads,
         size_t write_threads = kWriteThreads);
  ~Client();  // stops the threads after their current job; queued jobs are dropped
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  std::chrono::milliseconds limit() const { return limit_; }
  const std::string& name() const { return name_; }
  // Jobs skipped because their waiter had given up (for tests and the log).
  uint64_t skipped() const { return skipped_.load(); }

  // Runs f(Store&) on a database thread of `lane` and resumes the caller on its executor with
  // the result, or throws what f threw, or authdb::Timeout once limit() has passed. `what`
  // names the operation in the timeout message ("look up user"). g++ 12 (PR 100611): pass a
  // named f, never a temporary lambda with captures, inside the co_await.
  template <class F>
  boost::asio::awaitable<std::invoke_result_t<F&, Store&>> run(Lane lane, const char* what, F f);

 private:
  // What the waiter (I/O thread) and the database thread share for one job. `done` and `timer`
  // are touched only on the waiter's executor (the completion is posted there); `abandoned` is
  // read by the database thread.
  struct Op {
    boost::asio::any_io_executor executor;
    std::atomic<bool> abandoned{false};
    bool done = false;
    boost::asio::steady_timer* timer = nullptr;
    std::exception_ptr error;
  };
  template <class R>
  struct TypedOp : Op {
    std::optional<R> value;
  };
  struct Job {
    std::shared_ptr<Op> op;
    std::function<void(Store&)> work;  // stores its result in *op
    std::chrono::steady_clock::time_point deadline;
  };
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Job> jobs;
  };

  void submit(Lane lane, Job job);
  void worker(Queue& q, std::unique_ptr<Store> store);
  static void complete(const std::shared_ptr<Op>& op);
  [[noreturn]] void timed_out(const char* what) const;

  StoreFactory factory_;
  std::string name_;
  std::chrono::milliseconds limit_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> skipped_{0};
  Queue read_q_, write_q_;
  std::vector<std::thread> threads_;
};

template <class F>
boost::asio::awaitable<std::invoke_result_t<F&, Store&>> Client::run(Lane lane, const char* what, F f) {
  using R = std::invoke_result_t<F&, Store&>;
  using Value = std::conditional_t<std::is_void_v<R>, bool, R>;
  auto op = std::make_shared<TypedOp<Value>>();
  op->executor = co_await boost::asio::this_coro::executor;
  boost::asio::steady_timer timer(op->executor, limit_);
  op->timer = &timer;
  // If this frame goes away while the job is queued (shutdown), the job is skipped and the
  // completion never touches the timer.
  struct Detach {
    Op& op;
    ~Detach() {
      op.timer = nullptr;
      op.abandoned.store(true);
    }
  } detach{*op};
  Job job;
  job.op = op;
  job.deadline = std::chrono::steady_clock::now() + limit_;
  job.work = [o = op.get(), f = std::move(f)](Store& s) mutable {
    if constexpr (std::is_void_v<R>) {
      f(s);
      o->value.emplace(true);
    } else {
      o->value.emplace(f(s));
    }
  };
  submit(lane, std::move(job));
  co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  op->timer = nullptr;
  if (!op->done) timed_out(what);
  if (op->error) std::rethrow_exception(op->error);
  if constexpr (!std::is_void_v<R>) co_return std::move(*op->value);
}

}  // namespace rg::authdb
