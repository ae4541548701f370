# Helpers shared by every layer: warnings, one precompiled header for torch, the layer-library
# and test-registration functions, and the layering check.

# Every target links lddpm_common, so all of them see identical compile flags and can reuse the
# one precompiled <torch/torch.h> built by lddpm_pch.
add_library(lddpm_common INTERFACE)
target_compile_options(lddpm_common INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                            -Wno-unused-parameter -Winvalid-pch>)
target_compile_definitions(lddpm_common INTERFACE
  LDDPM_WITH_CUDA=${LDDPM_WITH_CUDA} LDDPM_WITH_NCCL=${LDDPM_WITH_NCCL}
  LDDPM_VERSION="${PROJECT_VERSION}"
  OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)  # the MPI C API only: no deprecated C++ bindings
target_include_directories(lddpm_common INTERFACE ${PROJECT_SOURCE_DIR})
# LibTorch's headers are third-party: keep their warnings out of ours.
get_target_property(_torch_inc torch INTERFACE_INCLUDE_DIRECTORIES)
target_include_directories(lddpm_common SYSTEM INTERFACE ${_torch_inc})
target_link_libraries(lddpm_common INTERFACE ${TORCH_LIBRARIES} Threads::Threads)

# Sanitizer builds (tests/sanitizers/: a second build tree that the test command makes and runs):
# LDDPM_SANITIZE=address is AddressSanitizer + UndefinedBehaviorSanitizer, thread is
# ThreadSanitizer. Every target gets the flags through lddpm_common (LibTorch, Open MPI, HDF5
# stay uninstrumented: their known reports are suppressed by tests/sanitizers/*.supp). -O1 keeps
# reports readable and compiles faster than -O3; UB is fatal, so a test fails on it.
if(LDDPM_SANITIZE STREQUAL "address")
  set(_lddpm_san -fsanitize=address,undefined -fno-sanitize-recover=all)
elseif(LDDPM_SANITIZE STREQUAL "thread")
  set(_lddpm_san -fsanitize=thread)
elseif(LDDPM_SANITIZE)
  message(FATAL_ERROR "LDDPM_SANITIZE='${LDDPM_SANITIZE}': expected address, thread or empty")
endif()
if(LDDPM_SANITIZE)
  target_compile_options(lddpm_common INTERFACE ${_lddpm_san} -fno-omit-frame-pointer -O1 -g1)
  target_link_options(lddpm_common INTERFACE ${_lddpm_san})
endif()

add_library(lddpm_pch OBJECT ${PROJECT_SOURCE_DIR}/cmake/pch.cpp)
target_link_libraries(lddpm_pch PRIVATE lddpm_common)
target_precompile_headers(lddpm_pch PRIVATE <torch/torch.h> <string> <vector> <memory>)

function(lddpm_use_pch target)
  target_precompile_headers(${target} REUSE_FROM lddpm_pch)
endfunction()

# lddpm_add_library(<name> SOURCES ... [DEPS ...])
# lddpm_add_library(<name> SOURCES ... DEPS ... [PRIVATE_DEPS ...]): PRIVATE_DEPS are what the
# library's own sources use and its headers never expose (MPI, NCCL behind distributed/), so
# dependants do not see their headers.
function(lddpm_add_library name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  if(NOT A_SOURCES)  # a layer with headers only (so far)
    add_library(${name} INTERFACE)
    target_link_libraries(${name} INTERFACE lddpm_common ${A_DEPS})
    return()
  endif()
  add_library(${name} STATIC ${A_SOURCES})
  target_link_libraries(${name} PUBLIC lddpm_common ${A_DEPS})
  if(A_PRIVATE_DEPS)
    target_link_libraries(${name} PRIVATE ${A_PRIVATE_DEPS})
  endif()
  lddpm_use_pch(${name})
endfunction()

# lddpm_add_test(<source> [LIBS ...] [NP n ...] [LABELS ...] [TIMEOUT s] [SANITIZE asan tsan])
#   One gtest binary per *Test.cpp. Without NP it is a plain test run by ctest; with NP each count
#   registers `mpiexec -n <count> --oversubscribe <binary>` with the label `mpi` (runs as root).
#   SANITIZE lists the sanitizer builds that build and run it too (label asan / tsan there); a
#   sanitizer build defines no other test, so it compiles only what these tests need
#   (LDDPM_SANITIZE_ONLY narrows that to the tests it names: the asan-quick tree).
function(lddpm_add_test source)
  cmake_parse_arguments(A "" "TIMEOUT" "LIBS;NP;LABELS;SANITIZE" ${ARGN})
  get_filename_component(name ${source} NAME_WE)
  set(san_env "")
  set(san_mpi_env "")
  set(skip FALSE)
  if(LDDPM_SANITIZE)
    set(label asan)
    if(LDDPM_SANITIZE STREQUAL "thread")
      set(label tsan)
    endif()
    if(label IN_LIST A_SANITIZE AND (NOT LDDPM_SANITIZE_ONLY OR name IN_LIST LDDPM_SANITIZE_ONLY))
      list(APPEND A_LABELS ${label})
      set(san_env ${LDDPM_SANITIZER_ENV})
      set(san_mpi_env ${LDDPM_SANITIZER_MPI_ENV})
    else()
      set(skip TRUE)  # defined (its CMakeLists may configure it further), never built or run
    endif()
  endif()
  if(skip)
    add_executable(${name} EXCLUDE_FROM_ALL ${source})
  else()
    add_executable(${name} ${source})
  endif()
  if(LDDPM_SANITIZE AND NOT skip)
    add_dependencies(lddpm_sanitized_tests ${name})
  endif()
  if(A_NP)
    target_link_libraries(${name} PRIVATE lddpm_mpi_test_main ${A_LIBS})
  else()
    target_link_libraries(${name} PRIVATE GTest::gtest_main ${A_LIBS})
  endif()
  target_link_libraries(${name} PRIVATE lddpm_common GTest::gtest)
  lddpm_use_pch(${name})
  if(skip)
    return()
  endif()
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 600)
  endif()
  if(A_NP)
    foreach(np ${A_NP})
      add_test(NAME ${name}_np${np}
               COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} --oversubscribe
                       ${MPIEXEC_PREFLAGS} $<TARGET_FILE:${name}> ${MPIEXEC_POSTFLAGS})
      set_tests_properties(${name}_np${np} PROPERTIES LABELS "mpi;${A_LABELS}" TIMEOUT ${A_TIMEOUT}
        ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;${san_mpi_env}")
    endforeach()
  else()
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES TIMEOUT ${A_TIMEOUT})
    if(A_LABELS)
      set_tests_properties(${name} PROPERTIES LABELS "${A_LABELS}")
    endif()
    if(san_env)
      set_tests_properties(${name} PROPERTIES ENVIRONMENT "${san_env}")
    endif()
  endif()
endfunction()

# docs/architecture.md: data/ and models/ depend on core only. Checked on the link graph here and on the
# include graph by tests/layering.sh.
function(lddpm_check_layering)
  foreach(layer lddpm_data lddpm_models lddpm_distributed)
    get_target_property(type ${layer} TYPE)
    if(type STREQUAL "INTERFACE_LIBRARY")
      get_target_property(deps ${layer} INTERFACE_LINK_LIBRARIES)
    else()
      get_target_property(deps ${layer} LINK_LIBRARIES)
    endif()
    foreach(forbidden lddpm_data lddpm_models lddpm_distributed)
      if(NOT forbidden STREQUAL layer AND forbidden IN_LIST deps)
        message(FATAL_ERROR "Layering: ${layer} links ${forbidden}; only launch/ may wire layers")
      endif()
    endforeach()
  endforeach()
endfunction()
