# smtpd pure parsers: RFC 5321 paths and parameters.
rg_unit_test(smtp_address_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_address_test.cpp LIBS rg_smtp)
# smtpd's DATA decoder (smtpd/data_reader): end of data, transparency, limits, smuggling shapes.
rg_unit_test(smtp_data_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_data_test.cpp LIBS rg_smtp)
