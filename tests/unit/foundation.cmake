# Foundation: config, IP forms, logging, authdb, status file.
rg_unit_test(foundation_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/config_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/ip_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/authdb_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/status_test.cpp
  LIBS rg_authdb rg_common SQLite::SQLite3)
# The example config is loaded by a test so it cannot rot.
target_compile_definitions(foundation_test PRIVATE RG_EXAMPLE_CONFIG="${PROJECT_SOURCE_DIR}/config/relaygate.example.json")
