# authdb::Client (database threads, lanes, time limit) and the RCPT user cache.
rg_unit_test(authdb_client_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/authdb_client_test.cpp LIBS rg_authdb)
