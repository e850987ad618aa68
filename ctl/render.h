// relaygatectl's output forms shared by several commands: the grant table and JSON, and a
// queued message's envelope as JSON (render.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "authdb/authdb.h"
#include "shared/spool.h"

namespace rg::ctl {

nlohmann::ordered_json grants_json(const std::vector<authdb::Grant>& grants);
void print_grant_table(const std::vector<authdb::Grant>& grants, int64_t now);
// The last error of a recipient not yet delivered ("" if none).
std::string message_last_error(const spool::Envelope& e);
nlohmann::ordered_json envelope_json(const spool::Envelope& e, int64_t now);

}  // namespace rg::ctl
