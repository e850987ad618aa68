# PROXY protocol end to end (issue 12): a throwaway HAProxy (Debian haproxy, generated config,
# foreground) in front of two nodes sharing one SQLite file; v1 and v2 headers. About 20 s (one
# test waits out the 5 s header timeout).
add_test(NAME haproxy_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/haproxy_test.py)
set_tests_properties(haproxy_e2e PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
