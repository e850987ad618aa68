// SASL DIGEST-MD5 server side (shared/sasl/mech_digest_md5.cpp) with RFC 2831 §4's fixed
// nonce, so the seed's example response ("chris", secret "secret") succeeds; and its
// digest-response parser on the first response itself.
// Parser invariant: an accepted digest-response has bounded values (the whole is at most
// kMaxDigestResponseLen octets).
#include "tests/fuzz/sasl_driver.h"

namespace {
void check_parse(std::string_view in) {
  const auto p = rg::sasl::detail::parse_digest_response(in);
  RG_FUZZ_CHECK(p.value.has_value() != !p.error.empty());
  if (!p.value) return;
  RG_FUZZ_CHECK(in.size() <= rg::sasl::detail::kMaxDigestResponseLen);
  const auto& v = *p.value;
  for (const auto* f : {&v.username, &v.realm, &v.nonce, &v.cnonce, &v.nc, &v.qop, &v.digest_uri, &v.response,
                        &v.maxbuf, &v.charset, &v.cipher, &v.authzid})
    if (f->has_value()) RG_FUZZ_CHECK((*f)->size() <= in.size());
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 0) check_parse(rg::fuzz::split(rg::fuzz::as_view(data + 1, size - 1), '\n').front());
  const rg::sasl::Context ctx{"elwood.innosoft.com", "imap", ""};
  auto m = rg::sasl::detail::make_digest_md5(ctx, std::string("OA6MG9tEQGm2hh"));
  rg::fuzz::run_sasl(*m, data, size, "secret");
  return 0;
}
