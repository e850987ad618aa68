# relaygate-policyd end to end (issue 13): Postfix policy requests over real sockets after a
# relaygatectl grant (reuse, IPv6 forms, sasl, malformed). About 1 s.
add_test(NAME policyd_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/policyd_test.py)
set_tests_properties(policyd_e2e PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>;RG_POLICYD=$<TARGET_FILE:relaygate-policyd>;RG_POSTLOGIN=$<TARGET_FILE:relaygate-dovecot-postlogin>")
