# TLS defaults judged by testssl.sh against the implicit-TLS ports (465- and 995-style).
add_test(NAME tls_testssl COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/tls_test.py)
set_tests_properties(tls_testssl PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
