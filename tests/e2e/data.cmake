# DATA streams to disk (issue 11): 25 MiB messages byte-identical, disk full mid-stream
# (root: tmpfs), kill -9 under concurrent submissions, a client gone mid-DATA.
add_test(NAME data_e2e COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/data_test.py)
set_tests_properties(data_e2e PROPERTIES TIMEOUT 300
  ENVIRONMENT "RG_SMTPD=$<TARGET_FILE:relaygate-smtpd>;RG_POP3D=$<TARGET_FILE:relaygate-pop3d>;RG_CTL=$<TARGET_FILE:relaygatectl>")
# The memory bound of a session in DATA (issue 11): 8 concurrent 24 MiB messages raise smtpd's
# RSS by less than 8 MiB (bench/data_memory.py; a memory bound, not a timing one). Not in a
# sanitizer build: ASan's quarantine keeps freed chunks resident (+330 MiB there), which says
# nothing about the daemon's own memory.
if(NOT RG_SANITIZE)
  add_test(NAME data_memory COMMAND python3 ${PROJECT_SOURCE_DIR}/bench/data_memory.py
    --smtpd $<TARGET_FILE:relaygate-smtpd> --ctl $<TARGET_FILE:relaygatectl>)
  set_tests_properties(data_memory PROPERTIES TIMEOUT 300)
endif()
