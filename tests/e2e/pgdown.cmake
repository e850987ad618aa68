# PostgreSQL down when the daemons start (issue 12): they start, answer temporary failures, and
# recover without a restart; a malformed URI stops them. Its own throwaway PostgreSQL.
add_test(NAME pgdown_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/pgdown_test.py)
set_tests_properties(pgdown_e2e PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77
  ENVIRONMENT "RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
