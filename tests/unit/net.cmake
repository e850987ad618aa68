# Unit tests of shared/net (rg_net): sockets on 127.0.0.1 port 0, each test time-bounded.
rg_unit_test(net_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/net_test.cpp ${CMAKE_CURRENT_LIST_DIR}/proxy_test.cpp
             LIBS rg_net)
