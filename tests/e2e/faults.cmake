# Server-side faults and hostile load (issue 11): 50 trickling clients cut on bytes, kill -9 of
# pop3d between DELE and QUIT, the status file on a full disk, fd exhaustion, SIGHUP storms,
# SIGTERM during a large RETR.
add_test(NAME faults_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/faults_test.py)
set_tests_properties(faults_e2e PROPERTIES TIMEOUT 300
  ENVIRONMENT "RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
