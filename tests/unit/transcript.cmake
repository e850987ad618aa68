# Transcript tests: tests/transcripts/{smtp,pop3}/*.txt, one gtest case per file, each played
# against an in-process server on a loopback port (format: tests/transcripts/README.md).
# The list of scripts is compiled into the runner, so adding or removing one re-globs
# (CONFIGURE_DEPENDS), rebuilds the runner and re-discovers its cases on the next build.
set(rg_transcript_root ${PROJECT_SOURCE_DIR}/tests/transcripts)
file(GLOB rg_transcripts CONFIGURE_DEPENDS RELATIVE ${rg_transcript_root} ${rg_transcript_root}/smtp/*.txt
     ${rg_transcript_root}/pop3/*.txt)
list(SORT rg_transcripts)
set(rg_transcript_list "")
foreach(script ${rg_transcripts})
  string(APPEND rg_transcript_list "\"${script}\",\n")
endforeach()
file(CONFIGURE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/transcript/transcript_files.inc CONTENT "${rg_transcript_list}")
rg_unit_test(transcript_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/transcript_test.cpp LIBS rg_smtp rg_pop3)
target_include_directories(transcript_test PRIVATE ${CMAKE_CURRENT_BINARY_DIR}/transcript)
target_compile_definitions(transcript_test PRIVATE RG_TRANSCRIPT_DIR="${rg_transcript_root}")
