# The Store contract on SQLite and PostgreSQL, and the PgStore tests (issue 12). Discovered
# tests run the "sqlite" instances and skip the PostgreSQL ones (no RG_TEST_PG_URI); the second
# test runs those against a throwaway PostgreSQL 15 (tests/pgtest.py), so CI really runs them.
rg_unit_test(authdb_store_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/authdb_store_test.cpp
             LIBS rg_authdb PkgConfig::LIBPQ)
add_test(NAME authdb_store_postgresql
         COMMAND python3 ${PROJECT_SOURCE_DIR}/tests/pgtest.py -- $<TARGET_FILE:authdb_store_test>
                 --gtest_filter=*postgresql*:PgStore*)
set_tests_properties(authdb_store_postgresql PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)
