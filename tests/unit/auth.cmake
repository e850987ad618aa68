# auth/ and shared/protocol: the SASL exchange driver over a scripted transport and a real
# authdb, and the command engine's gates and disconnect summary with a toy protocol.
rg_unit_test(auth_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/auth_test.cpp LIBS rg_auth)
rg_unit_test(protocol_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/protocol_test.cpp LIBS rg_net rg_common)
