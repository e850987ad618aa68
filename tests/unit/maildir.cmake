# shared/maildir: POP3 wire encoding and sizes, delivery/scan/mark_seen, maildrop locks (no sockets).
rg_unit_test(maildir_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/maildir_test.cpp LIBS rg_common)
# The streaming writers DATA feeds (shared/stream_file, maildir::Incoming, spool::Incoming).
rg_unit_test(stream_write_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/stream_write_test.cpp LIBS rg_common)
