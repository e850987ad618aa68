# Outbound queue end to end (issue 5): delivery to Postfix's smtp-sink and to a scriptable
# smarthost (retry, bounce, TLS, AUTH, kill -9, disk full); bounded well under 90 s.
add_test(NAME queue_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/queue_test.py)
set_tests_properties(queue_e2e PROPERTIES TIMEOUT 120
  ENVIRONMENT "RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
