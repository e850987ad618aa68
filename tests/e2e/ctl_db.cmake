# relaygatectl db status / db copy (issue 12, Deliver 4). cli_db_e2e: SQLite only, ~10 s.
# ctl_pg_e2e: copy into a throwaway PostgreSQL the test starts itself (tests/pgtest.py), back
# into SQLite, and log in through pop3d on it; it never skips (no PostgreSQL 15: it fails).
set(rg_ctl_db_env
    "RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>;PYTHONDONTWRITEBYTECODE=1")
add_test(NAME cli_db_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/ctl_db_test.py DbSqlite)
set_tests_properties(cli_db_e2e PROPERTIES TIMEOUT 120 ENVIRONMENT "${rg_ctl_db_env}")
add_test(NAME ctl_pg_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/ctl_db_test.py DbPostgres)
set_tests_properties(ctl_pg_e2e PROPERTIES TIMEOUT 180 ENVIRONMENT "${rg_ctl_db_env}")
