// Connection admission (total and per client IP) and the worker pool for slow work.
// Invariants: ConnectionLimiter is used on the I/O thread only and counts exactly the live
// Tokens; WorkerPool::run resumes the awaiting coroutine on its own executor (DESIGN.md).
#pragma once

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace boost::asio {
class thread_pool;
}

namespace rg::net {

class ConnectionLimiter {
  using Entry = std::pair<const std::string, std::size_t>;

 public:
  // Move-only admission of one connection; releasing it (destruction) frees the slot.
  // The limiter must outlive its tokens.
  class Token {
   public:
    Token(Token&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)), entry_(other.entry_) {}
    Token& operator=(Token&& other) noexcept;
    Token(const Token&) = delete;
    Token& operator=(const Token&) = delete;
    ~Token() { reset(); }
    // The client IP this token counts against.
    const std::string& ip() const { return entry_->first; }

   private:
    friend class ConnectionLimiter;
    Token(ConnectionLimiter* owner, Entry* entry) : owner_(owner), entry_(entry) {}
    void reset() noexcept;
    ConnectionLimiter* owner_;
    Entry* entry_;  // node of owner_->per_ip_; stable until erased at count 0
  };

  // 0 means unlimited for either limit.
  ConnectionLimiter(std::size_t max_total, std::size_t max_per_ip);
  ConnectionLimiter(const ConnectionLimiter&) = delete;  // tokens point at it
  ConnectionLimiter& operator=(const ConnectionLimiter&) = delete;
  // A token if both limits allow one more connection from ip (canonical form), else nullopt.
  std::optional<Token> try_acquire(const std::string& ip);
  // New limits (config reload); live connections are kept even if now over the limit.
  void set_limits(std::size_t max_total, std::size_t max_per_ip);
  std::size_t total() const { return total_; }
  std::size_t count(const std::string& ip) const;
  std::size_t max_total() const { return max_total_; }
  std::size_t max_per_ip() const { return max_per_ip_; }

 private:
  void release(Entry* entry) noexcept;
  std::size_t max_total_, max_per_ip_, total_ = 0;
  std::unordered_map<std::string, std::size_t> per_ip_;
};

// A few threads for slow, blocking work (password hashing, fsync) so the I/O thread never
// stalls. The job must not touch session state or the I/O thread's objects: pass it copies
// and return results. Destruction waits for queued and running jobs: declare the pool after
// the io_context so that it is destroyed first.
// Destroy (or join()) a pool before the io_context its callers run on: a pool thread still
// holds the caller's executor for a moment after it has handed the result back.
class WorkerPool {
 public:
  explicit WorkerPool(std::size_t threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs f(args...) on a pool thread and resumes the caller on its own executor with the
  // result; an exception thrown by f is rethrown in the caller. f returns a value or void.
  // GCC 12 destroys a lambda with non-trivially-destructible captures twice when it is a
  // temporary inside the co_await expression: write `co_await pool.run(&hash, pw, salt)` or
  // name the lambda first (`auto job = [...]{...}; co_await pool.run(std::move(job));`).
  template <class F, class... Args>
  boost::asio::awaitable<std::invoke_result_t<F&, Args&...>> run(F f, Args... args);

  // Waits for queued and running jobs, then joins the threads (the destructor does too).
  void join();

 private:
  boost::asio::awaitable<void> run_erased(void (*fn)(void*), void* arg);
  std::unique_ptr<boost::asio::thread_pool> pool_;
};

template <class F, class... Args>
boost::asio::awaitable<std::invoke_result_t<F&, Args&...>> WorkerPool::run(F f, Args... args) {
  using R = std::invoke_result_t<F&, Args&...>;
  static_assert(!std::is_reference_v<R>, "WorkerPool::run: return a value, not a reference");
  if constexpr (std::is_void_v<R>) {
    auto call = [&] { std::invoke(f, args...); };
    co_await run_erased([](void* p) { (*static_cast<decltype(call)*>(p))(); }, &call);
  } else {
    std::optional<R> result;
    auto call = [&] { result.emplace(std::invoke(f, args...)); };
    co_await run_erased([](void* p) { (*static_cast<decltype(call)*>(p))(); }, &call);
    co_return std::move(*result);
  }
}

}  // namespace rg::net
