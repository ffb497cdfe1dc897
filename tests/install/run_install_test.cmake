# Installs the build tree into a scratch prefix, then configures, builds and runs a consumer
# project that uses find_package(parx), and compiles the same program with pkg-config flags.
set(prefix ${PARX_BINARY_DIR}/install-test/prefix)
set(consumer_build ${PARX_BINARY_DIR}/install-test/consumer)
file(REMOVE_RECURSE ${PARX_BINARY_DIR}/install-test)

execute_process(COMMAND ${CMAKE_COMMAND} --install ${PARX_BINARY_DIR} --prefix ${prefix}
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()

execute_process(COMMAND ${CMAKE_COMMAND} -S ${PARX_SOURCE_DIR}/tests/install -B ${consumer_build}
                        -G ${CMAKE_GENERATOR} -DCMAKE_PREFIX_PATH=${prefix}
                        -DCMAKE_CXX_COMPILER=${CXX} "-DCMAKE_CXX_FLAGS=${FLAGS}"
                        "-DCMAKE_EXE_LINKER_FLAGS=${FLAGS}"
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer against the installed package failed: ${rc}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${consumer_build} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer failed: ${rc}")
endif()
execute_process(COMMAND ${consumer_build}/consumer RESULT_VARIABLE rc OUTPUT_VARIABLE out)
message(STATUS "consumer printed: ${out}")
if(rc OR NOT out MATCHES "sum=499500 tripled=1498500")
  message(FATAL_ERROR "the consumer built against the installed package failed: ${rc} ${out}")
endif()

# pkg-config
find_program(PKG_CONFIG pkg-config)
if(PKG_CONFIG)
  file(GLOB_RECURSE pc_file ${prefix}/*/parx.pc)
  if(NOT pc_file)
    message(FATAL_ERROR "no parx.pc installed under ${prefix}")
  endif()
  get_filename_component(pc_dir "${pc_file}" DIRECTORY)
  set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
  execute_process(COMMAND ${PKG_CONFIG} --cflags --libs parx OUTPUT_VARIABLE pc_flags
                  RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(rc)
    message(FATAL_ERROR "pkg-config does not find the installed parx.pc")
  endif()
  separate_arguments(pc_list UNIX_COMMAND "${pc_flags}")
  separate_arguments(flag_list UNIX_COMMAND "${FLAGS}")
  execute_process(COMMAND ${CXX} ${flag_list} ${PARX_SOURCE_DIR}/tests/install/consumer.cpp
                          -o ${consumer_build}/consumer_pc ${pc_list}
                  RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "compiling with pkg-config flags (${pc_flags}) failed")
  endif()
  execute_process(COMMAND ${consumer_build}/consumer_pc RESULT_VARIABLE rc OUTPUT_VARIABLE out)
  if(rc OR NOT out MATCHES "sum=499500 tripled=1498500")
    message(FATAL_ERROR "the pkg-config-built consumer failed: ${out}")
  endif()
endif()
