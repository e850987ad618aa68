// The PROXY protocol header parser (shared/net/proxy.*): one input is the first bytes a balancer
// sends. Invariants: a parsed header lies within the input, is at most 107 bytes ending in CRLF
// (v1) or 16 + its length field within the payload bound (v2), and a non-local one carries a
// canonical address; reading as read_proxy_header does (exactly `need` bytes at a time) reaches
// the same outcome as parsing the whole input and never consumes a byte past a parsed header.
#include <string>

#include "shared/ip.h"
#include "shared/net/proxy.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using rg::net::ProxyHeader;
  const std::string_view in = rg::fuzz::as_view(data, size);
  const ProxyHeader whole = rg::net::parse_proxy_header(in);
  if (whole.status == ProxyHeader::parsed) {
    RG_FUZZ_CHECK(whole.length >= rg::net::kProxyV1MinLength && whole.length <= size);
    if (whole.version == 1) {
      RG_FUZZ_CHECK(whole.length <= rg::net::kProxyV1MaxLength);
      RG_FUZZ_CHECK(in.substr(whole.length - 2, 2) == "\r\n");
      RG_FUZZ_CHECK(in.substr(0, whole.length - 2).find_first_of("\r\n") == std::string_view::npos);
    } else {
      RG_FUZZ_CHECK(whole.version == 2);
      RG_FUZZ_CHECK(whole.length >= rg::net::kProxyV2FixedLength &&
                    whole.length <= rg::net::kProxyV2FixedLength + rg::net::kProxyV2MaxPayload);
    }
    if (whole.local) {
      RG_FUZZ_CHECK(whole.source_ip.empty());
    } else {
      RG_FUZZ_CHECK(rg::canonical_ip(whole.source_ip) == whole.source_ip);
    }
  } else if (whole.status == ProxyHeader::invalid) {
    RG_FUZZ_CHECK(!whole.reason.empty());
  } else {
    RG_FUZZ_CHECK(whole.need >= 1);
  }

  // The reader's way: parse what has been read, read exactly `need` more.
  size_t got = 0;
  for (;;) {
    const ProxyHeader step = rg::net::parse_proxy_header(in.substr(0, got));
    if (step.status == ProxyHeader::incomplete) {
      RG_FUZZ_CHECK(step.need >= 1);
      if (whole.status == ProxyHeader::parsed) RG_FUZZ_CHECK(got + step.need <= whole.length);
      got += step.need;
      if (got > size) break;  // the input ends first: it would wait (then time out)
      continue;
    }
    RG_FUZZ_CHECK(step.status == whole.status);
    if (step.status == ProxyHeader::parsed) {
      RG_FUZZ_CHECK(got == step.length && step.length == whole.length);
      RG_FUZZ_CHECK(step.source_ip == whole.source_ip && step.source_port == whole.source_port);
    }
    break;
  }
  return 0;
}
