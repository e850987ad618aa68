# The include layers (ARCHITECTURE.md): scripts/check-layers over the tree, with its self-test
# on fake trees so the check cannot pass by finding nothing.
add_test(NAME include_layers COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/layers_test.py)
set_tests_properties(include_layers PROPERTIES TIMEOUT 60)
