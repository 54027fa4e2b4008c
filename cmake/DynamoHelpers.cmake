# dynamo_layer(<name> DEPS <layers...> LIBS <targets...>)
# One object library per folder lib/<name>/. Each layer records its closure of
# lower layers so a test of layer X links exactly X and what X builds on.
set(DYNAMO_LAYER_OBJECTS "")
function(dynamo_layer name)
  cmake_parse_arguments(ARG "" "" "DEPS;LIBS" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/lib/${name}/*.cc)
  list(FILTER sources EXCLUDE REGEX "_(test|benchmark|fuzz)\\.cc$")
  if(NOT sources)
    set(sources ${PROJECT_SOURCE_DIR}/cmake/empty.cc)
  endif()
  add_library(dynamo_${name} OBJECT ${sources})
  target_compile_features(dynamo_${name} PUBLIC cxx_std_20)
  target_include_directories(dynamo_${name} PUBLIC
    ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/lib)
  set_target_properties(dynamo_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_link_libraries(dynamo_${name} PRIVATE $<BUILD_INTERFACE:dynamo_build_flags>)
  set(closure ${name})
  foreach(dep IN LISTS ARG_DEPS)
    target_link_libraries(dynamo_${name} PUBLIC dynamo_${dep}_usage)
    get_property(dep_closure GLOBAL PROPERTY DYNAMO_CLOSURE_${dep})
    list(APPEND closure ${dep_closure})
  endforeach()
  list(REMOVE_DUPLICATES closure)
  set_property(GLOBAL PROPERTY DYNAMO_CLOSURE_${name} ${closure})
  # Usage requirements (include dirs, external libraries) without objects, so
  # depending on a layer never links its objects twice.
  add_library(dynamo_${name}_usage INTERFACE)
  target_include_directories(dynamo_${name}_usage INTERFACE
    ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/lib)
  target_compile_features(dynamo_${name}_usage INTERFACE cxx_std_20)
  target_link_libraries(dynamo_${name}_usage INTERFACE ${ARG_LIBS})
  foreach(dep IN LISTS ARG_DEPS)
    target_link_libraries(dynamo_${name}_usage INTERFACE dynamo_${dep}_usage)
  endforeach()
  target_link_libraries(dynamo_${name} PUBLIC ${ARG_LIBS})
  set(DYNAMO_LAYER_OBJECTS ${DYNAMO_LAYER_OBJECTS} $<TARGET_OBJECTS:dynamo_${name}> PARENT_SCOPE)
endfunction()

# dynamo_link_layer(<target> <layer>): links <target> with <layer>'s objects
# and those of every layer below it.
function(dynamo_link_layer target layer)
  get_property(closure GLOBAL PROPERTY DYNAMO_CLOSURE_${layer})
  foreach(l IN LISTS closure)
    target_sources(${target} PRIVATE $<TARGET_OBJECTS:dynamo_${l}>)
    target_link_libraries(${target} PRIVATE dynamo_${l}_usage)
  endforeach()
  target_link_libraries(${target} PRIVATE dynamo_build_flags)
endfunction()
