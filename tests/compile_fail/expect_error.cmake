# Compiles SOURCE (syntax check only) and passes when it fails with every
# message named on its leading "// expect: " lines.
file(STRINGS ${SOURCE} leading LIMIT_COUNT 4 REGEX "^// expect: ")
list(TRANSFORM leading REPLACE "^// expect: " "")
execute_process(COMMAND ${CXX} -std=c++20 -fsyntax-only -I${INCLUDES} ${SOURCE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must not")
endif()
foreach(expected IN LISTS leading)
  string(FIND "${err}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${SOURCE} failed without the expected message\n  expected: ${expected}\n  got:\n${err}")
  endif()
  message(STATUS "failed as it should: ${expected}")
endforeach()
