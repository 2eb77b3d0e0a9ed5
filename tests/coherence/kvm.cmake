include(${CMAKE_SOURCE_DIR}/tests/dsmkvm/dsmkvm.cmake)
