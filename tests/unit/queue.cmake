# The outbound queue without sockets: SMTP client parsers and DATA encoder, retry/bounce state
# machine, DSN rendering, spool locking/update/recovery and the runner's load/persist steps.
rg_unit_test(queue_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/queue_test.cpp LIBS rg_outbound)
