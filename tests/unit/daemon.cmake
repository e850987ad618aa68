# Unit tests of the daemon skeleton (shared/daemon_server): the reload table, the connection
# limit's refusal and the SIGTERM drain, against a minimal server on 127.0.0.1 port 0.
rg_unit_test(daemon_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/daemon_test.cpp LIBS rg_daemon)
