# Install rules: headers, the exported INTERFACE target, config and version files.
include(CMakePackageConfigHelpers)

install(DIRECTORY include/shareformer DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS shareformer EXPORT shareformerTargets)
install(EXPORT shareformerTargets NAMESPACE shareformer::
        DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/shareformer)

set(SHAREFORMER_CONFIG_USES_OPENMP ${OpenMP_CXX_FOUND})
configure_package_config_file(cmake/shareformerConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/shareformerConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/shareformer)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/shareformerConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/shareformerConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/shareformerConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/shareformer)
