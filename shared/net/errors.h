// Error codes of rg::net that are not plain socket/TLS errors: a per-operation timeout, a line
// longer than the caller's limit, a peer sending below the caller's rate floor. All are ordinary
// outcomes returned as error_code, never thrown (RFC 5321 4.5.3.1 line limits, 4.5.3.2 timeouts).
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace rg::net {

enum class errc {
  timeout = 1,       // the operation did not finish before its deadline
  line_too_long,     // no LF within max_octets; the over-long line was discarded through its LF
  too_slow,          // bytes arrived below the caller's rate floor after its grace (Stream::RateFloor)
  bad_proxy_header,  // a PROXY protocol header was required and the bytes are not one (proxy.h)
};

// The category of rg::net::errc ("rg.net").
const boost::system::error_category& net_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), net_category()}; }

}  // namespace rg::net

template <>
struct boost::system::is_error_code_enum<rg::net::errc> : std::true_type {};
