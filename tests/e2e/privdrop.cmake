# Started as root without the unit: bind, then drop to run_as.user; refuse to stay root.
add_test(NAME privilege_drop COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/privdrop_test.py)
set_tests_properties(privilege_drop PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77
  ENVIRONMENT "RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
