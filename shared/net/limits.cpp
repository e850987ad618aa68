// ConnectionLimiter and WorkerPool (see limits.h). Invariants: total_ equals the sum of
// per_ip_ counts; per_ip_ holds no zero counts; pool jobs complete on the caller's executor.
#include "shared/net/limits.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace rg::net {

ConnectionLimiter::ConnectionLimiter(std::size_t max_total, std::size_t max_per_ip)
    : max_total_(max_total), max_per_ip_(max_per_ip) {}

void ConnectionLimiter::set_limits(std::size_t max_total, std::size_t max_per_ip) {
  max_total_ = max_total;
  max_per_ip_ = max_per_ip;
}

std::optional<ConnectionLimiter::Token> ConnectionLimiter::try_acquire(const std::string& ip) {
  if (max_total_ != 0 && total_ >= max_total_) return std::nullopt;
  auto [it, inserted] = per_ip_.try_emplace(ip, 0);
  if (max_per_ip_ != 0 && it->second >= max_per_ip_) return std::nullopt;
  ++it->second;
  ++total_;
  return Token(this, &*it);
}

std::size_t ConnectionLimiter::count(const std::string& ip) const {
  const auto it = per_ip_.find(ip);
  return it == per_ip_.end() ? 0 : it->second;
}

void ConnectionLimiter::release(Entry* entry) noexcept {
  --total_;
  if (--entry->second == 0) per_ip_.erase(entry->first);
}

ConnectionLimiter::Token& ConnectionLimiter::Token::operator=(Token&& other) noexcept {
  if (this != &other) {
    reset();
    owner_ = std::exchange(other.owner_, nullptr);
    entry_ = other.entry_;
  }
  return *this;
}

void ConnectionLimiter::Token::reset() noexcept {
  if (owner_) std::exchange(owner_, nullptr)->release(entry_);
}

namespace {
boost::asio::awaitable<void> call_on_pool(void (*fn)(void*), void* arg) {
  fn(arg);
  co_return;
}
}  // namespace

WorkerPool::WorkerPool(std::size_t threads)
    : pool_(std::make_unique<boost::asio::thread_pool>(threads == 0 ? 1 : threads)) {}

WorkerPool::~WorkerPool() { join(); }

void WorkerPool::join() { pool_->join(); }

boost::asio::awaitable<void> WorkerPool::run_erased(void (*fn)(void*), void* arg) {
  // co_spawn with use_awaitable completes through the awaiting coroutine's executor.
  co_await boost::asio::co_spawn(pool_->get_executor(), call_on_pool(fn, arg), boost::asio::use_awaitable);
}

}  // namespace rg::net
