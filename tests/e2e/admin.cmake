# Issue 9: second instances, daemon options, TLS file rules, SMTP replies byte for byte.
add_test(NAME admin_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/admin_test.py)
set_tests_properties(admin_e2e PROPERTIES TIMEOUT 240
  ENVIRONMENT "RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
