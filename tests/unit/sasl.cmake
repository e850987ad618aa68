# SASL mechanisms, base64/crypto codecs and APOP (shared/sasl): pure unit tests, no sockets.
rg_unit_test(sasl_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/sasl_test.cpp LIBS rg_sasl)
