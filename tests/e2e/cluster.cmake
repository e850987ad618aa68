# Two complete nodes (pop3d + smtpd each) sharing one throwaway PostgreSQL 15 (tests/pgtest.py,
# one server per test class): login on A relays on B, revocation, expiry, shared failure counts,
# status files, a shared maildir_root's POP3 lock, a two-host URI, PostgreSQL stopped with
# -m immediate during traffic and a node started while it is down (issue 12). About 60 s.
add_test(NAME cluster_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/cluster_test.py)
set_tests_properties(cluster_e2e PROPERTIES TIMEOUT 240 SKIP_RETURN_CODE 77
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
