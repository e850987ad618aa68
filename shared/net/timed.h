// Run one as_tuple awaitable against a deadline (Boost 1.81 has no cancel_after): the one
// timeout helper of the tree, used by net::Stream and by the outbound SMTP client. Invariant:
// when the deadline wins, the operation is cancelled and has completed before this returns;
// the result is then errc::timeout.
#pragma once

#include "shared/net/errors.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <tuple>
#include <utility>

namespace rg::net {

// Completion token for awaitables that return (error_code, results...) instead of throwing.
inline constexpr auto tuple_awaitable = boost::asio::as_tuple(boost::asio::use_awaitable);

template <class... T>
boost::asio::awaitable<std::tuple<boost::system::error_code, T...>> timed(
    boost::asio::awaitable<std::tuple<boost::system::error_code, T...>> op,
    std::chrono::steady_clock::time_point deadline) {
  using namespace boost::asio::experimental::awaitable_operators;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, deadline);
  auto result = co_await (std::move(op) || timer.async_wait(tuple_awaitable));
  if (result.index() == 0) co_return std::get<0>(std::move(result));
  co_return std::tuple<boost::system::error_code, T...>{make_error_code(errc::timeout), T{}...};
}

template <class... T>
boost::asio::awaitable<std::tuple<boost::system::error_code, T...>> timed(
    boost::asio::awaitable<std::tuple<boost::system::error_code, T...>> op,
    std::chrono::steady_clock::duration timeout) {
  return timed(std::move(op), std::chrono::steady_clock::now() + timeout);
}

}  // namespace rg::net
