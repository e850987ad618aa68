# Operations: systemd units (verify + security rating) and the Debian package (install,
# config check, purge). The package test installs into this machine: it needs root and dpkg.
add_test(NAME systemd_units COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/systemd_test.sh ${PROJECT_SOURCE_DIR}/systemd
         $<TARGET_FILE:relaygate-pop3d> $<TARGET_FILE:relaygate-smtpd> $<TARGET_FILE:relaygate-policyd>)
set_tests_properties(systemd_units PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
add_test(NAME debian_package COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/package_test.sh ${PROJECT_BINARY_DIR})
set_tests_properties(debian_package PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
