# IMAP- and POP-before-SMTP with a real Dovecot 2.3 (issue 13): one throwaway Dovecot whose
# post-login services run relaygate-dovecot-postlogin against relaygate-policyd's grant socket,
# one Postfix asking policyd, relaygate-smtpd (tests/e2e/mta.py). Root only (the Dovecot and
# Postfix masters). Skipped while the build has no relaygate-policyd. Not in the ASan pass
# (scripts/test -E): it tests the configuration of third-party programs.
set(rg_dovecot_env "PYTHONDONTWRITEBYTECODE=1;RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
if(TARGET relaygate-policyd AND TARGET relaygate-dovecot-postlogin)
  string(APPEND rg_dovecot_env ";RG_POLICYD=$<TARGET_FILE:relaygate-policyd>;RG_POSTLOGIN=$<TARGET_FILE:relaygate-dovecot-postlogin>")
endif()
add_test(NAME dovecot_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/dovecot_test.py)
set_tests_properties(dovecot_e2e PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 ENVIRONMENT "${rg_dovecot_env}")
