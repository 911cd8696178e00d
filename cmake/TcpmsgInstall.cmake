# Installation: headers, libraries, tcpmsg.pc and the CMake package tcpmsg::tcpmsg, all in
# the standard GNUInstallDirs places. Both package files are relocatable: they find the
# prefix from their own location, so `cmake --install build --prefix DIR` works for any DIR.
include(CMakePackageConfigHelpers)

set(TCPMSG_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tcpmsg)

# Components, for the Debian packages (cmake/TcpmsgPackage.cmake): "runtime" is the shared
# library itself, "dev" everything a program is built with, "tools" the programs.
install(TARGETS ${TCPMSG_INSTALL_TARGETS}
    EXPORT tcpmsgTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
    COMPONENT dev
    FILES_MATCHING PATTERN "*.h")

install(EXPORT tcpmsgTargets
    NAMESPACE tcpmsg::
    DESTINATION ${TCPMSG_CMAKE_DIR}
    COMPONENT dev)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/tcpmsgConfig.cmake.in
    ${PROJECT_BINARY_DIR}/tcpmsgConfig.cmake
    INSTALL_DESTINATION ${TCPMSG_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tcpmsgConfigVersion.cmake
    VERSION ${PROJECT_VERSION}
    COMPATIBILITY SameMinorVersion)
install(FILES
    ${PROJECT_BINARY_DIR}/tcpmsgConfig.cmake
    ${PROJECT_BINARY_DIR}/tcpmsgConfigVersion.cmake
    DESTINATION ${TCPMSG_CMAKE_DIR}
    COMPONENT dev)

# pkg-config: prefix relative to the .pc file's own directory.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
    set(TCPMSG_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
    file(RELATIVE_PATH _tcpmsg_pc_up
        "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
    set(TCPMSG_PC_PREFIX "\${pcfiledir}/${_tcpmsg_pc_up}")
endif()
# `pkg-config --variable=tls tcpmsg` says whether TLS is built; a static link then needs
# OpenSSL's libraries, which Requires.private names.
if(TCPMSG_HAVE_TLS)
    set(TCPMSG_PC_TLS yes)
    set(TCPMSG_PC_REQUIRES_PRIVATE "libssl libcrypto")
else()
    set(TCPMSG_PC_TLS no)
    set(TCPMSG_PC_REQUIRES_PRIVATE "")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/tcpmsg.pc.in ${PROJECT_BINARY_DIR}/tcpmsg.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/tcpmsg.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
    COMPONENT dev)
