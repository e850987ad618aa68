# The fail2ban example filter against the daemons' real logs (failed logins, relay probes,
# unauthenticated MAIL on submission, next to successful sessions), their journal form, and
# synthetic lines (IPv6, an injected ip=). Needs fail2ban-regex (scripts/bootstrap installs it).
add_test(NAME fail2ban_filter COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/fail2ban_test.py)
set_tests_properties(fail2ban_filter PROPERTIES TIMEOUT 180
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
