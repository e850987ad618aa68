# smtpd pure parsers: RFC 5321 paths and parameters.
rg_unit_test(smtp_address_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_address_test.cpp LIBS rg_smtp)
# smtpd's DATA decoder (smtpd/data_reader): end of data, transparency, limits, smuggling shapes.
rg_unit_test(smtp_data_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_data_test.cpp LIBS rg_smtp)
# smtpd's trace headers (smtpd/received): Received: and Return-Path: byte for byte per RFC 3848 name.
rg_unit_test(smtp_received_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_received_test.cpp LIBS rg_smtp)
# MAIL FROM parameters (smtpd/address parse_mail_params): SIZE, BODY, AUTH, the rest refused.
rg_unit_test(smtp_mail_params_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_mail_params_test.cpp LIBS rg_smtp)
# smtpd's relay decision (smtpd/relay_policy): SMTP AUTH, trusted networks, grants, database errors.
rg_unit_test(smtp_relay_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_relay_test.cpp LIBS rg_smtp)
# smtpd command table and pure checks (smtpd/commands): gates, check_<cmd>, the command line limit.
rg_unit_test(smtp_commands_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_commands_test.cpp LIBS rg_smtp)
