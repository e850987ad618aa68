# The whole tree follows .clang-format (checked in CI like every other test).
add_test(NAME clang_format COMMAND ${PROJECT_SOURCE_DIR}/scripts/check-format)
set_tests_properties(clang_format PROPERTIES TIMEOUT 120)
