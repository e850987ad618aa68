# pop3d end to end: the real daemon on loopback driven by poplib, raw sockets, curl and fetchmail
# (tests/e2e/harness.py starts it with a temporary config and free ports). About 15 s.
add_test(NAME pop3_e2e
         COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/pop3_test.py
                 --pop3d $<TARGET_FILE:relaygate-pop3d> --ctl $<TARGET_FILE:relaygatectl>)
set_tests_properties(pop3_e2e PROPERTIES TIMEOUT 120 ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
