# Manual pages: mandoc lint at warning level must print nothing, and relaygatectl(8) must name
# every command relaygatectl's own --help lists.
add_test(NAME man_pages COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/man_test.py ${PROJECT_SOURCE_DIR}/man
         $<TARGET_FILE:relaygatectl>)
set_tests_properties(man_pages PROPERTIES TIMEOUT 60 ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
