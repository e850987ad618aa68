# smtpd end to end with real clients: smtplib, swaks, curl, Perl Net::SMTP, poplib for
# POP-before-SMTP; hostile input and relay tricks.
add_test(NAME smtp_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/smtp_test.py)
set_tests_properties(smtp_e2e PROPERTIES TIMEOUT 300
  ENVIRONMENT "RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
