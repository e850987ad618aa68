// shared/protocol/command.h: the command engine's parsing, lookup, gate order and the
// disconnect summary, with a toy protocol (no sockets: proceed coroutines run on an io_context).
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <string>
#include <vector>

#include "shared/protocol/command.h"

namespace {

namespace asio = boost::asio;
using namespace rg::protocol;

TEST(SplitCommand, KeywordAndArguments) {
  struct Row {
    std::string_view line, keyword, args;
  };
  for (const Row& r : {Row{"NOOP", "NOOP", ""}, Row{"MAIL FROM:<a@b>", "MAIL", "FROM:<a@b>"},
                       Row{"PASS  two spaces ", "PASS", " two spaces "}, Row{"", "", ""}, Row{" X", "", "X"}}) {
    const auto cl = split_command(r.line);
    EXPECT_EQ(cl.keyword, r.keyword) << r.line;
    EXPECT_EQ(cl.args, r.args) << r.line;
  }
}

// A toy protocol: GREET (any state, before TLS), SEND (Ready only, needs an argument, a sync
// point), SECRET (not before TLS), LEAVE (uncounted), LATE (Ready only, no argument, a sync
// point whose state gate comes last).
struct Toy {
  enum class CommandId { Greet, Send, Secret, Leave, Late, Unknown, kCount };
  enum class State { Start, Ready };
  struct Facts {
    State state = State::Start;
  };
  struct Refusal {
    std::string text;
  };
  static std::optional<Refusal> check_send(const Facts&, std::string_view args) {
    if (args.empty()) return Refusal{"send needs text"};
    return std::nullopt;
  }
  static std::optional<Refusal> check_late(const Facts&, std::string_view args) {
    if (!args.empty()) return Refusal{"late takes no argument"};
    return std::nullopt;
  }
  asio::awaitable<void> proceed_greet(std::string_view) {
    facts_.state = State::Ready;
    out.push_back("hello");
    co_return;
  }
  asio::awaitable<void> proceed_send(std::string_view args) {
    out.push_back("sent " + std::string(args));
    co_return;
  }
  asio::awaitable<void> proceed_other(std::string_view) {
    out.push_back("ok");
    co_return;
  }
  static const std::array<Command<Toy>, 5> kTable;

  // The engine's contract.
  const Facts& facts() const { return facts_; }
  void begin(const Command<Toy>* row) { current = row ? row->log_name : "unknown"; }
  bool tls_required_now() const { return tls_required; }
  void refuse(const Refusal& r) { out.push_back("refused " + std::string(current) + ": " + r.text); }
  void refuse_unknown(std::string_view keyword) { out.push_back("unknown " + std::string(keyword)); }
  static Refusal refusal_tls_required(const Command<Toy>&) { return {"tls first"}; }
  static Refusal refusal_wrong_state(const Command<Toy>& row, const Facts&) {
    return {"not now: " + std::string(row.name)};
  }
  bool sync_violation() const { return pipelined; }
  asio::awaitable<void> sync_error() {
    out.push_back("sync error");
    co_return;
  }

  Facts facts_;
  bool tls_required = false;
  bool pipelined = false;
  std::string_view current;
  std::vector<std::string> out;
};

const std::array<Command<Toy>, 5> Toy::kTable = {{
    {CommandId::Greet, "GREET", "greet", kAnyState, kBeforeTls | kCounted, nullptr, &Toy::proceed_greet},
    {CommandId::Send, "SEND", "send", state_bit(State::Ready), kBeforeTls | kSyncPoint | kCounted, &Toy::check_send,
     &Toy::proceed_send},
    {CommandId::Secret, "SECRET", "secret", kAnyState, kCounted, nullptr, &Toy::proceed_other},
    {CommandId::Leave, "LEAVE", "leave", kAnyState, kBeforeTls, nullptr, &Toy::proceed_other},
    {CommandId::Late, "LATE", "late", state_bit(State::Ready), kSyncPoint | kLateState | kCounted, &Toy::check_late,
     &Toy::proceed_other},
}};

// The same protocol with the state gate before the TLS gate (POP3's order).
struct ToyStateFirst : Toy {
  static constexpr bool kStateGateFirst = true;
  static const std::array<Command<ToyStateFirst>, 2> kTable;
  void begin(const Command<ToyStateFirst>* row) { current = row ? row->log_name : "unknown"; }
  static Refusal refusal_tls_required(const Command<ToyStateFirst>&) { return {"tls first"}; }
  static Refusal refusal_wrong_state(const Command<ToyStateFirst>& row, const Facts&) {
    return {"not now: " + std::string(row.name)};
  }
};

const std::array<Command<ToyStateFirst>, 2> ToyStateFirst::kTable = {{
    {CommandId::Send, "SEND", "send", state_bit(State::Ready), kCounted, nullptr, &Toy::proceed_send},
    {CommandId::Secret, "SECRET", "secret", state_bit(State::Start), kCounted, nullptr, &Toy::proceed_other},
}};

template <class T>
std::vector<std::string> play(T& toy, std::vector<std::string> lines) {
  asio::io_context io;
  auto f = asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (const auto& l : lines) co_await dispatch<T>(toy, T::kTable, l);
      },
      asio::use_future);
  io.run();
  f.get();
  return toy.out;
}

TEST(Dispatch, GatesInOrder) {
  Toy toy;
  EXPECT_EQ(play(toy, {"send x", "NOPE a", "greet", "Send", "SEND hi", "leave"}),
            (std::vector<std::string>{"refused send: not now: SEND", "unknown NOPE", "hello",
                                      "refused send: send needs text", "sent hi", "ok"}));
}

TEST(Dispatch, TlsGateComesBeforeStateAndCheck) {
  Toy toy;
  toy.tls_required = true;
  EXPECT_EQ(play(toy, {"SECRET", "SEND", "GREET"}),
            (std::vector<std::string>{"refused secret: tls first", "refused send: not now: SEND", "hello"}));
}

TEST(Dispatch, StateGateFirstWhenTheSessionAsks) {
  static_assert(!state_gate_first<Toy> && state_gate_first<ToyStateFirst>);
  ToyStateFirst toy;
  toy.tls_required = true;
  EXPECT_EQ(play(toy, {"SEND x", "SECRET"}),
            (std::vector<std::string>{"refused send: not now: SEND", "refused secret: tls first"}));
  toy.tls_required = false;
  EXPECT_EQ(play(toy, {"SECRET"}).back(), "ok");
}

TEST(Dispatch, SyncPointBeforeCheck) {
  Toy toy;
  toy.facts_.state = Toy::State::Ready;
  toy.pipelined = true;
  EXPECT_EQ(play(toy, {"SEND", "GREET"}), (std::vector<std::string>{"sync error", "hello"}));
}

// kLateState: the sync gate, then the check, then the state gate.
TEST(Dispatch, LateStateGateComesAfterSyncAndCheck) {
  Toy toy;
  EXPECT_EQ(play(toy, {"LATE x", "LATE", "GREET", "LATE x", "LATE"}),
            (std::vector<std::string>{"refused late: late takes no argument", "refused late: not now: LATE", "hello",
                                      "refused late: late takes no argument", "ok"}));
  Toy piped;
  piped.pipelined = true;
  EXPECT_EQ(play(piped, {"LATE x", "SEND"}), (std::vector<std::string>{"sync error", "refused send: not now: SEND"}));
}

TEST(CommandStats, PostfixSummary) {
  constexpr auto names = summary_names<6, Command<Toy>>(Toy::kTable, static_cast<size_t>(Toy::CommandId::Unknown));
  EXPECT_EQ(names[0], "greet");
  EXPECT_EQ(names[3], "");  // LEAVE has no kCounted
  EXPECT_EQ(names[5], "unknown");
  CommandStats<6> stats;
  stats.count(0, true);
  stats.count(1, false);
  stats.count(1, true);
  stats.count(3, true);  // not counted in the summary
  EXPECT_EQ(stats.total(1), 2u);
  EXPECT_EQ(stats.ok(1), 1u);
  testing::internal::CaptureStderr();
  {
    rg::log::Line line(rg::log::Level::Info, "s1");
    line.kv("event", "disconnect");
    stats.append_to(line, names);
  }
  const std::string logged = testing::internal::GetCapturedStderr();
  EXPECT_NE(logged.find("event=disconnect greet=1 send=1/2 commands=2/3\n"), std::string::npos) << logged;
  EXPECT_EQ(logged.find("leave="), std::string::npos);
}

TEST(CommandStats, FieldsWithoutTotal) {
  constexpr auto names = summary_names<6, Command<Toy>>(Toy::kTable, static_cast<size_t>(Toy::CommandId::Unknown));
  CommandStats<6> stats;
  stats.count(4, true);
  stats.count(5, false);
  testing::internal::CaptureStderr();
  std::pair<unsigned, unsigned> totals;
  {
    rg::log::Line line(rg::log::Level::Info, "s1");
    line.kv("event", "disconnect");
    totals = stats.append_fields_to(line, names);
  }
  const std::string logged = testing::internal::GetCapturedStderr();
  EXPECT_NE(logged.find("event=disconnect late=1 unknown=0/1\n"), std::string::npos) << logged;
  EXPECT_EQ(totals, (std::pair<unsigned, unsigned>{1, 2}));
}

}  // namespace
