# relaygate-policyd's pure half (policyd/policy_request): the policy protocol reader (limits,
# split reads, reuse, unknown attributes, malformed lines), the decision table, and the
# "policyd" config section.
rg_unit_test(policyd_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/policyd_test.cpp LIBS rg_policy)
