# relaygatectl end to end: exit codes, messages, status file, bad input.
add_test(NAME cli COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/cli_test.py $<TARGET_FILE:relaygatectl>)
set_tests_properties(cli PROPERTIES TIMEOUT 180)
