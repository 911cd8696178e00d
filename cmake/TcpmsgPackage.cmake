# Debian packages with CPack (`cpack -G DEB` in a build configured with
# -DCMAKE_INSTALL_PREFIX=/usr, so that GNUInstallDirs picks Debian's multiarch libdir):
#   libtcpmsg0      the shared library (component "runtime")
#   libtcpmsg-dev   headers, the .so link, pkg-config and CMake files, the API man pages
#   tcpmsg-tools    tcpmsg-cat, tcpmsg-relay, the echo pair, their man pages, the systemd
#                   and HAProxy examples
# Dependencies on other packages (libc6, libssl3) come from dpkg-shlibdeps; between ours,
# the exact version. .ci/run builds them, installs them with apt-get, builds the consumer
# against them and removes them (tests/tools/deb_check.sh).
set(CPACK_PACKAGE_NAME tcpmsg)
set(CPACK_PACKAGE_VENDOR "libtcpmsg")
set(CPACK_PACKAGE_CONTACT "libtcpmsg maintainers <maintainers@example.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev tools)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The tools need libtcpmsg.so.0, which is in libtcpmsg0, not installed yet: dpkg-shlibdeps
# finds it in the build, and the shlibs file libtcpmsg0 ships says which package it is.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR}/lib)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY "=")
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "${PROJECT_HOMEPAGE_URL}")
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS OFF)

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libtcpmsg${TCPMSG_SOVERSION})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
    "TCP message framing, sockets and servers for C: the shared library\n"
    "libtcpmsg makes TCP client/server programs easy to write and hard to get wrong:\n"
    "framing codecs, message connections with deadlines, TLS, five server models.")
# (ldconfig runs after install and removal: CPack writes the postinst and postrm with the
# shlibs file.)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libtcpmsg-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libtcpmsg${TCPMSG_SOVERSION} (= ${PROJECT_VERSION})")
set(CPACK_COMPONENT_DEV_DESCRIPTION
    "TCP message framing, sockets and servers for C: development files\n"
    "Headers, pkg-config and CMake package files and the API manual pages of libtcpmsg.")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME tcpmsg-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION net)
set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS "libtcpmsg${TCPMSG_SOVERSION} (= ${PROJECT_VERSION})")
set(CPACK_COMPONENT_TOOLS_DESCRIPTION
    "TCP message framing, sockets and servers for C: programs\n"
    "tcpmsg-cat (netcat for framed messages), tcpmsg-relay, tcpmsg-echo-server and\n"
    "tcpmsg-echo-client, with systemd and HAProxy examples.")

include(CPack)
