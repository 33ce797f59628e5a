# Finds moodycamel's ConcurrentQueue as Debian packages it (libconcurrentqueue-dev),
# which ships neither a CMake config nor a .pc file. Defines the INTERFACE IMPORTED
# target concurrentqueue::concurrentqueue, named as upstream names it.
find_path(concurrentqueue_INCLUDE_DIR
  NAMES concurrentqueue/concurrentqueue.h
  PATH_SUFFIXES include)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(concurrentqueue REQUIRED_VARS concurrentqueue_INCLUDE_DIR)
if(concurrentqueue_FOUND AND NOT TARGET concurrentqueue::concurrentqueue)
  add_library(concurrentqueue::concurrentqueue INTERFACE IMPORTED)
  set_target_properties(concurrentqueue::concurrentqueue PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${concurrentqueue_INCLUDE_DIR}")
endif()
mark_as_advanced(concurrentqueue_INCLUDE_DIR)
