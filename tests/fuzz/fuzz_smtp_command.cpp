// The SMTP command line (smtpd/commands.*) and MAIL/RCPT paths and parameters
// (smtpd/address.*): one input is one raw command line as read_line returns it.
// Invariants: an accepted line has no line ending and no control byte but tab; an accepted path,
// written back with Mailbox::text(), parses again to the same mailbox; an accepted SIZE is
// within the limit; echoed text is printable and bounded.
#include <string>

#include "smtpd/address.h"
#include "smtpd/commands.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace rg::smtp;

constexpr uint64_t kMaxSize = 25 * 1024 * 1024;

void check_reparse(const Mailbox& m, std::string_view prefix, bool allow_null) {
  const std::string again = std::string(prefix) + "<" + m.text() + ">";
  const ParseResult r = parse_path_arg(again, prefix, allow_null);
  RG_FUZZ_CHECK(r.path.has_value());
  RG_FUZZ_CHECK(!r.path->null);
  RG_FUZZ_CHECK(r.path->mailbox.local == m.local);
  RG_FUZZ_CHECK(r.path->mailbox.domain == m.domain);
  RG_FUZZ_CHECK(r.path->mailbox.literal == m.literal);
}

void check_path(std::string_view args, std::string_view prefix, bool allow_null) {
  const ParseResult r = parse_path_arg(args, prefix, allow_null);
  RG_FUZZ_CHECK(r.path.has_value() != r.error.has_value());
  if (!r.path) return;
  if (r.path->null) {
    RG_FUZZ_CHECK(allow_null);
  } else {
    RG_FUZZ_CHECK(r.path->mailbox.local.size() <= kMaxLocalPart);
    RG_FUZZ_CHECK(r.path->mailbox.domain.size() <= kMaxDomain);
    check_reparse(r.path->mailbox, prefix, allow_null);
  }
  const MailParams mp = parse_mail_params(r.path->params, kMaxSize);
  if (!mp.refusal) RG_FUZZ_CHECK(mp.size <= kMaxSize);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw = rg::fuzz::as_view(data, size);
  const std::string shown = printable(raw);
  RG_FUZZ_CHECK(shown.size() <= 255);
  for (char c : shown) RG_FUZZ_CHECK(c >= 0x20 && c < 0x7f);

  const CommandLine line = check_command_line(raw);
  if (line.problem != CommandLine::Problem::None) return 0;
  // RFC 5321 §4.1 (shared/ascii.h has_control): a tab is allowed, other controls are not.
  for (char c : line.text) RG_FUZZ_CHECK(c == '\t' || (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f));

  const size_t sp = line.text.find(' ');
  std::string verb(line.text.substr(0, sp));
  for (char& c : verb) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::string_view args = sp == std::string_view::npos ? std::string_view() : line.text.substr(sp + 1);

  Facts f;
  f.state = State::Greeted;
  f.esmtp = true;
  f.starttls_offered = true;
  f.max_recipients = 100;
  f.max_message_size = kMaxSize;
  (void)check_ehlo(f, args);
  (void)check_helo(f, args);
  (void)check_starttls(f, args);
  (void)check_auth(f, args);
  (void)check_data(f, args);
  (void)check_rset(f, args);
  (void)check_vrfy(f, args);
  const AuthArgs a = split_auth_args(args);
  RG_FUZZ_CHECK(a.mechanism.size() + a.initial.size() <= args.size());

  if (verb == "MAIL") {
    if (!check_mail(f, args)) {
      const MailCommand m = parse_mail(f, args);
      RG_FUZZ_CHECK(m.size <= kMaxSize);
      if (!m.from.null) check_reparse(m.from.mailbox, "FROM:", true);
    }
  } else if (verb == "RCPT") {
    f.state = State::Rcpt;
    if (!check_rcpt(f, args)) check_reparse(parse_rcpt(args), "TO:", false);
  }
  // Whatever the verb: the path parsers over the same arguments.
  check_path(args, "FROM:", true);
  check_path(args, "TO:", false);
  return 0;
}
