// relaygate-dovecot-postlogin: Dovecot 2.3's post-login script (src/util/script-login.c runs it
// as `script-login PROGRAM ARGS...`, appending the path of script-login itself) that records the
// login's IP as a relaygate grant through relaygate-policyd's grant socket, then execs the rest of
// its argv so the login goes on. stdin and stdout are the client's IMAP/POP3 connection and fd 3
// is Dovecot's: this program never reads or writes them; stderr goes to Dovecot's log.
// Whatever happens to the grant (relaygate down, refused), the login never fails because of it.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr const char* kProgram = "relaygate-dovecot-postlogin";
// Default socket: the grant_socket path the example config and the unit's RuntimeDirectory use.
constexpr const char* kDefaultSocket = "/run/relaygate-policyd/grant.sock";
constexpr const char* kDefaultMethod = "dovecot-imap";
// The whole exchange (connect, send, the reply) may delay a login this long at most.
constexpr auto kTimeout = std::chrono::milliseconds(2000);
constexpr size_t kMaxReply = 512;  // relaygate-policyd's grant socket line limit

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

// Sends the grant line and reads the one-line reply; "" on success, else the reason.
std::string record_grant(const std::string& socket_path, const std::string& line) {
  const auto deadline = Clock::now() + kTimeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) return "socket path too long";
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return std::string("socket: ") + std::strerror(errno);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) return "connect " + socket_path + ": " + std::strerror(errno);
    if (!wait_for(fd, POLLOUT, deadline)) return "connect " + socket_path + ": timeout";
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return "connect " + socket_path + ": " + std::strerror(err);
  }
  for (size_t sent = 0; sent < line.size();) {
    if (!wait_for(fd, POLLOUT, deadline)) return "send: timeout";
    const ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return std::string("send: ") + std::strerror(errno);
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string reply;
  while (reply.find('\n') == std::string::npos) {
    if (reply.size() > kMaxReply) return "reply too long";
    if (!wait_for(fd, POLLIN, deadline)) return "no reply within 2 s";
    char buf[256];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return reply.empty() ? "connection closed without a reply" : "reply cut short";
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return std::string("recv: ") + std::strerror(errno);
    }
    reply.append(buf, static_cast<size_t>(n));
  }
  reply.erase(reply.find('\n'));
  if (reply == "OK") return "";
  return reply.empty() ? "empty reply" : reply;
}

// A value we put on one line: no spaces or control characters (they would change the line).
bool safe_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (c <= ' ' || c == 0x7f) return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string method = kDefaultMethod, socket_path = kDefaultSocket;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a.rfind("--method=", 0) == 0)
      method = std::string(a.substr(9));
    else if (a.rfind("--socket=", 0) == 0)
      socket_path = std::string(a.substr(9));
    else
      break;  // the first other word starts the command to exec (script-login, normally)
  }
  const char* ip = std::getenv("IP");
  const char* user = std::getenv("USER");
  // No IP (a local login, e.g. doveadm or a pre-authenticated imap process): nothing to grant.
  if (ip != nullptr && *ip != '\0') {
    std::string reason;
    if (user == nullptr || !safe_token(user))
      reason = "USER missing or not one word";
    else if (!safe_token(ip) || !safe_token(method))
      reason = "IP or method not one word";
    else
      reason = record_grant(socket_path, "grant " + std::string(ip) + " " + user + " " + method + "\n");
    if (!reason.empty())
      std::fprintf(stderr, "%s: grant for %s from %s not recorded: %s\n", kProgram, user ? user : "?", ip,
                   reason.c_str());
  }
  if (i >= argc) {
    std::fprintf(stderr, "%s: nothing to exec: run it from script-login, with the command after its options\n",
                 kProgram);
    return 1;
  }
  ::execv(argv[i], argv + i);
  std::fprintf(stderr, "%s: exec %s: %s\n", kProgram, argv[i], std::strerror(errno));
  return 1;
}
