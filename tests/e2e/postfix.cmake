# relaygate behind a real Postfix 3.7 (issue 13): a throwaway Postfix instance per test class
# (tests/e2e/mta.py), the sqlite: map of config/postfix/ in check_client_access, and (with
# relaygate-policyd) the check_policy_service snippet on PostgreSQL with Dovecot SASL. Root only
# (the Postfix master); about 7 s for the map class. Not in the ASan pass (scripts/test -E): it
# tests the configuration of third-party programs; policyd runs under ASan in its own test.
set(rg_postfix_env "PYTHONDONTWRITEBYTECODE=1;RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
if(TARGET relaygate-policyd)
  string(APPEND rg_postfix_env ";RG_POLICYD=$<TARGET_FILE:relaygate-policyd>")
endif()
add_test(NAME postfix_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/postfix_test.py)
set_tests_properties(postfix_e2e PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 ENVIRONMENT "${rg_postfix_env}")
