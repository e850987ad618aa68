# Database waits (issue 11): a 15 s BEGIN EXCLUSIVE by another process stalls no session that
# does not need the database; those that do answer a temporary failure within the limit.
add_test(NAME dbwait_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/dbwait_test.py)
set_tests_properties(dbwait_e2e PROPERTIES TIMEOUT 90
  ENVIRONMENT "RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
