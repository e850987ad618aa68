// Passwords for relaygatectl: one line from standard input, or the controlling terminal with
// echo off (never an argument: it would show in ps and the shell history).
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "authdb/users.h"
#include "ctl/context.h"

namespace rg::ctl {

std::string read_line_stdin() {
  std::string line;
  if (!std::getline(std::cin, line)) throw Failure("no password on standard input");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

// Reads a secret from the controlling terminal with echo off.
std::string read_tty_secret(const char* prompt) {
  FILE* tty = std::fopen("/dev/tty", "r+");
  if (tty == nullptr) throw UsageError("no terminal to read the password from; use --password-stdin");
  int fd = fileno(tty);
  termios old{};
  bool restore = tcgetattr(fd, &old) == 0;
  if (restore) {
    termios quiet = old;
    quiet.c_lflag &= static_cast<tcflag_t>(~ECHO);
    tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  std::fputs(prompt, tty);
  std::fflush(tty);
  std::string line;
  int ch;
  while ((ch = std::fgetc(tty)) != EOF && ch != '\n') line.push_back(static_cast<char>(ch));
  if (restore) tcsetattr(fd, TCSAFLUSH, &old);
  std::fputs("\n", tty);
  std::fclose(tty);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

std::string read_new_password(const Opts& o) {
  std::string pw;
  if (o.password_stdin) {
    pw = read_line_stdin();
  } else {
    pw = read_tty_secret("New password: ");
    if (read_tty_secret("Retype new password: ") != pw) throw Failure("the passwords do not match");
  }
  if (auto p = authdb::password_problem(pw)) throw Failure(*p);
  return pw;
}

}  // namespace rg::ctl
