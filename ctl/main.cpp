// relaygatectl: the administrator's CLI over authdb — users, grants, status file, the database
// itself (db status, db copy), config check — and over the outbound queue (list, show, flush,
// delete, hold, release).
// Exit codes: 0 ok, 1 operational error (named on stderr), 2 usage error. Every command that
// changes grants rewrites the status file. Passwords come from the TTY (no echo) or stdin.
// Run as root, whatever it creates (database, folders, status file) belongs to run_as.user.
// The command table (CLI11), the usage messages, config check and main(); the commands live in
// user_cmds.cpp, grant_cmds.cpp, db_cmds.cpp and queue_cmds.cpp, what they share in context.h.
#include <iostream>
#include <map>
#include <string>
#include <vector>

// CLI11 instead of a hand-written parser: the help text is generated from the same definitions
// that parse the command line, so help and parser cannot drift apart, and every option, missing
// argument and subcommand list is reported the same way.
#include <CLI/CLI.hpp>

#include "ctl/context.h"
#include "shared/net/preflight.h"
#include "shared/version.h"

namespace {

using namespace rg;
using namespace rg::ctl;

// Validates the config (loading it already did) and says which one. Kept as its own step so a
// preflight (files, folders, ownership, ports) can be added here later.
// Like `postfix check`: syntax (done by loading), then the preflight both daemons run at start
// (TLS files, folders, smarthost password file), as the service user.
int config_check(Context& c, const Opts&) {
  if (!preflight::report(preflight::check_as_service_user(c.cfg, true, true))) return kExitFail;
  std::cout << (c.cfg.file.empty() ? std::string("embedded defaults (relative to ") + fs::current_path().string() + ")"
                                   : c.cfg.file.string())
            << ": ok\n";
  return kExitOk;
}

using Handler = std::function<int(Context&, const Opts&)>;

// One leaf command of the table below.
struct Command {
  const char* group;  // "user", "grant", ...; nullptr for a top-level command
  const char* name;
  const char* description;
  Handler run;
  std::function<void(CLI::App&, Opts&)> bind;  // its arguments and options
  bool needs_config = true;
};

void bind_name(CLI::App& a, Opts& o) { a.add_option("NAME", o.name, "user name")->required(); }
void bind_id(CLI::App& a, Opts& o) { a.add_option("ID", o.id, "queue id")->required(); }
void bind_json(CLI::App& a, Opts& o) { a.add_flag("--json", o.json, "print JSON"); }
void bind_password_stdin(CLI::App& a, Opts& o) {
  a.add_flag("--password-stdin", o.password_stdin, "read the password as one line from standard input");
}

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"user", "add", "add a user (password from the terminal, or --password-stdin)", user_add,
       [](CLI::App& a, Opts& o) {
         bind_name(a, o);
         a.add_flag("--legacy-mechs", o.legacy,
                    "also store the password-equivalent secret APOP, CRAM-MD5 and DIGEST-MD5 need");
         bind_password_stdin(a, o);
       }},
      {"user", "passwd", "change a user's password, or import a crypt(3) hash", user_passwd,
       [](CLI::App& a, Opts& o) {
         bind_name(a, o);
         bind_password_stdin(a, o);
         a.add_flag("--hash-stdin", o.hash_stdin,
                    "read an existing crypt(3) hash ($y$, $6$, $2b$, ...) from standard input");
         a.add_flag("--legacy-mechs", o.legacy, "enable the legacy mechanisms for this user");
         a.add_flag("--no-legacy-mechs", o.no_legacy, "disable them (drops the stored secret)");
       }},
      {"user", "del", "delete a user and revoke its grants", user_del, bind_name},
      {"user", "list", "list the users", user_list, bind_json},
      {"user", "enable", "enable a user", [](Context& c, const Opts& o) { return user_enable(c, o, true); }, bind_name},
      {"user", "disable", "disable a user and revoke its grants",
       [](Context& c, const Opts& o) { return user_enable(c, o, false); }, bind_name},
      {"grant", "list", "list the live grants", grant_list, bind_json},
      {"grant", "add", "grant an IP address relay rights by hand (method admin)", grant_add,
       [](CLI::App& a, Opts& o) {
         a.add_option("IP", o.ip, "IPv4 or IPv6 address")->required();
         a.add_option("--user", o.user, "the user the grant is for")->required()->type_name("NAME");
         a.add_option("--ttl", o.ttl, "seconds (default: grants.ttl_seconds)")->type_name("SECONDS");
       }},
      {"grant", "revoke", "revoke the grant of IP, or all grants of --user NAME", grant_revoke,
       [](CLI::App& a, Opts& o) {
         a.add_option("IP", o.ip, "IPv4 or IPv6 address");
         a.add_option("--user", o.user, "revoke every grant of this user")->type_name("NAME");
       }},
      {"grant", "purge", "drop expired grant rows", grant_purge, [](CLI::App&, Opts&) {}},
      {nullptr, "status", "print the live grants, or (re)write the status file", status,
       [](CLI::App& a, Opts& o) { a.add_flag("--write", o.write, "write the status file instead"); }},
      {nullptr, "sasl-plain", "print the base64 AUTH PLAIN argument for NAME", sasl_plain,
       [](CLI::App& a, Opts& o) {
         bind_name(a, o);
         bind_password_stdin(a, o);
       },
       false},
      {"queue", "list", "list queued messages", queue_list, bind_json},
      {"queue", "show", "print a message's envelope and content", queue_show, bind_id},
      {"queue", "flush", "try one message (ID) or all that are not on hold now", queue_flush,
       [](CLI::App& a, Opts& o) { a.add_option("ID", o.id, "queue id (default: all)"); }},
      {"queue", "delete", "drop a message without a bounce", queue_delete, bind_id},
      {"queue", "hold", "stop trying a message", [](Context& c, const Opts& o) { return queue_hold(c, o, true); },
       bind_id},
      {"queue", "release", "release a held message and try it now",
       [](Context& c, const Opts& o) { return queue_hold(c, o, false); }, bind_id},
      {"db", "status", "show the backend, schema version, reachability, latency and counts", db_status, bind_json},
      {"db", "copy", "copy the users and live grants into another database (SQLite or PostgreSQL)", db_copy,
       [](CLI::App& a, Opts& o) {
         a.add_option("--to", o.to, "the target: a SQLite file or a postgresql:// URI")
             ->required()
             ->type_name("URI|PATH");
         a.add_flag("--force", o.force,
                    "copy into a target holding other or differing rows: the source's replace differing ones");
       }},
      {"config", "check", "validate the config file", config_check, [](CLI::App&, Opts&) {}},
  };
  return table;
}

// Descriptions of the command groups, in the order the help lists them.
const std::vector<std::pair<const char*, const char*>> kGroups = {
    {"user", "manage users and their passwords"},
    {"grant", "POP-before-SMTP relay grants"},
    {"queue", "the outbound queue (mail waiting for the smarthost)"},
    {"db", "the user and grant database: status, copy to another (SQLite or PostgreSQL)"},
    {"config", "the config file"},
};

// The deepest subcommand the parser entered (the app itself when none).
const CLI::App* selected(const CLI::App& app) {
  const CLI::App* cur = &app;
  while (!cur->get_subcommands().empty()) cur = cur->get_subcommands().front();
  return cur;
}

std::string subcommand_names(const CLI::App& app) {
  std::string out;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    out += (out.empty() ? "" : ", ") + sub->get_name();
  return out;
}

std::string command_path(const CLI::App* app) {
  std::string path;
  for (; app != nullptr && app->get_parent() != nullptr; app = app->get_parent())
    path = app->get_name() + (path.empty() ? "" : " " + path);
  return path;
}

// One message for a command line the parser refused, in the words of the old parser where it had
// them (the tests and scripts grep for them): unknown command, unknown option, unexpected argument.
std::string usage_message(const CLI::App& app, const CLI::ParseError& e) {
  const CLI::App* at = selected(app);
  const std::string path = command_path(at);
  const std::vector<std::string> extras = app.remaining(true);
  const bool group =
      at->get_subcommands().empty() && !at->get_subcommands([](const CLI::App*) { return true; }).empty();
  for (const auto& x : extras)
    if (x.size() > 1 && x[0] == '-') return "unknown option " + log_safe(x);
  if (group) {
    const std::string names = subcommand_names(*at);
    if (!extras.empty())
      return "unknown command \"" + log_safe(path.empty() ? extras[0] : path + " " + extras[0]) +
             "\"; expected one of: " + names;
    if (path.empty()) return "no command given; expected one of: " + names;
    return path + ": a subcommand is required: " + names;
  }
  if (!extras.empty()) return (path.empty() ? "" : path + ": ") + "unexpected argument \"" + log_safe(extras[0]) + "\"";
  return (path.empty() ? "" : path + ": ") + e.what();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"relaygatectl: manage relaygate users, POP-before-SMTP grants, the status file and the queue",
               "relaygatectl"};
  app.set_version_flag("--version", std::string("relaygatectl ") + rg::kVersion);
  app.footer(std::string("Without --config: ") + kDefaultConfigFile +
             " when it exists, else the embedded defaults relative to the current folder.\n"
             "Exit status: 0 done, 1 operational error, 2 usage error.");
  app.require_subcommand(1);
  app.fallthrough();  // --config and --help are accepted after the command words too
  std::string config_file;
  app.add_option("--config", config_file, "the config file")->type_name("FILE");

  Opts opts;
  std::map<std::string, CLI::App*> groups;
  for (const auto& [name, description] : kGroups) {
    CLI::App* g = app.add_subcommand(name, description);
    g->require_subcommand(1);
    groups[name] = g;
  }
  std::map<const CLI::App*, const Command*> leaves;
  for (const auto& cmd : commands()) {
    CLI::App* parent = cmd.group ? groups.at(cmd.group) : &app;
    CLI::App* sub = parent->add_subcommand(cmd.name, cmd.description);
    cmd.bind(*sub, opts);
    leaves[sub] = &cmd;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version: to stdout, exit 0
  } catch (const CLI::ParseError& e) {
    const std::string path = command_path(selected(app));
    std::cerr << "relaygatectl: " << usage_message(app, e) << "\n"
              << "Run `relaygatectl " << (path.empty() ? "" : path + " ") << "--help` for the usage.\n";
    return kExitUsage;
  }

  try {
    auto leaf = leaves.find(selected(app));
    if (leaf == leaves.end()) throw UsageError("no command given");  // require_subcommand rules this out
    if (config_file.empty() && app.get_option("--config")->count() > 0) throw UsageError("--config needs a FILE");
    Context ctx;
    if (leaf->second->needs_config) load_config(ctx, config_file);
    return leaf->second->run(ctx, opts);
  } catch (const UsageError& e) {
    std::cerr << "relaygatectl: " << e.what() << "\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "relaygatectl: " << e.what() << "\n";
    return kExitFail;
  }
}
