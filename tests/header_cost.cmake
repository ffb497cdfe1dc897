# Test: what a program that includes only parx/thread_pool.hpp compiles. It must not see the codec,
# the remote registry, MPI or the checkpoint journal (they cost compile time it does not use).
execute_process(COMMAND ${CXX} -std=c++20 -E -I${ROOT}/include ${ROOT}/tests/test_thread_only.cpp
                        -I${GTEST_INCLUDE}
                OUTPUT_VARIABLE pre RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "preprocessing failed: ${err}")
endif()
set(bad "")
foreach(h parx/codec.hpp parx/remote.hpp parx/detail/journal.hpp parx/checkpoint.hpp parx/mpi.hpp
          mpi.h parx/process_pool.hpp)
  string(FIND "${pre}" "/${h}\"" at)
  if(NOT at EQUAL -1)
    list(APPEND bad ${h})
  endif()
endforeach()
string(REGEX MATCHALL "\n" lines "${pre}")
list(LENGTH lines n)
message("parx/thread_pool.hpp alone: ${n} preprocessed lines")
if(bad)
  message(FATAL_ERROR "parx/thread_pool.hpp pulls in: ${bad}")
endif()
message("sees no codec, registry, MPI or journal")
