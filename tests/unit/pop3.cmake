# pop3d pure parsers (pop3d/command_parse): message numbers, arguments, APOP and AUTH.
rg_unit_test(pop3_parse_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/pop3_parse_test.cpp LIBS rg_pop3)
# pop3d/maildrop on a temporary Maildir: numbering, lock, deletions only at UPDATE.
rg_unit_test(pop3_maildrop_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/pop3_maildrop_test.cpp LIBS rg_pop3)
# pop3d/commands: the command table's states and TLS gate, and every pure check_<cmd>.
rg_unit_test(pop3_commands_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/pop3_commands_test.cpp LIBS rg_pop3)
