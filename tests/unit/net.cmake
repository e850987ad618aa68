# Unit tests of shared/net (rg_net): sockets on 127.0.0.1 port 0, each test time-bounded.
rg_unit_test(net_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/net_test.cpp LIBS rg_net)

if(RG_SANITIZE)
  # UBSan's vptr check validates a dynamic type by reading the process's memory map; in the
  # accept-loop EMFILE test the process has no free descriptor on purpose, so the check cannot
  # read it and reports Asio's scheduler task as "invalid vptr" ("memory cannot be printed").
  # Without vptr in this one test program; ASan and the rest of UBSan still check it.
  target_compile_options(net_test PRIVATE -fno-sanitize=vptr)
endif()
