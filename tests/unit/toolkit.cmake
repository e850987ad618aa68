# shared/fd.h and shared/fsutil: flock guard, read and write loops, the durable writer.
rg_unit_test(toolkit_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/fsutil_test.cpp LIBS rg_common)
