# Test: an upward include fails the layer check. Copies the tree, makes a core file include a
# process-layer header, and runs cmake/check_layers.cmake on the copy (the test expects its error).
set(copy ${WORK}/layers_upward)
file(REMOVE_RECURSE ${copy})
file(COPY ${ROOT}/src ${ROOT}/include ${ROOT}/cmake DESTINATION ${copy})
file(APPEND ${copy}/src/core/errors.cpp "#include \"parx/process_pool.hpp\"\n")
execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${copy} -DSTAMP=${copy}/stamp
                        -P ${copy}/cmake/check_layers.cmake
                RESULT_VARIABLE rc ERROR_VARIABLE err)
message("${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "the layer check accepted an upward include")
endif()
# A public header that no layer lists is refused too.
file(REMOVE_RECURSE ${copy})
file(COPY ${ROOT}/src ${ROOT}/include ${ROOT}/cmake DESTINATION ${copy})
file(WRITE ${copy}/include/parx/stray.hpp "#pragma once\n")
execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${copy} -DSTAMP=${copy}/stamp
                        -P ${copy}/cmake/check_layers.cmake
                RESULT_VARIABLE rc3 ERROR_VARIABLE err3)
if(rc3 EQUAL 0 OR NOT err3 MATCHES "include/parx/stray.hpp belongs to no layer")
  message(FATAL_ERROR "the layer check accepted a header of no layer: ${err3}")
endif()
# And the tree as it is passes.
execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${ROOT} -DSTAMP=${copy}/stamp2
                        -P ${ROOT}/cmake/check_layers.cmake RESULT_VARIABLE rc2)
if(NOT rc2 EQUAL 0)
  message(FATAL_ERROR "the layer check refused the tree as it is")
endif()
