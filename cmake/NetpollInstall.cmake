# What `cmake --install` puts under the prefix (GNUInstallDirs paths):
#   lib/libnetpoll.a, lib/libnetpoll.so.MAJOR.MINOR.PATCH (+ soname links)
#   include/netpoll.h, include/netpoll_version.h
#   lib/pkgconfig/netpoll.pc          pkg-config --cflags --libs netpoll
#   lib/cmake/netpoll/                find_package(netpoll) -> netpoll::netpoll
#   share/man/man3/np_*.3             (man/CMakeLists.txt)
#   share/doc/netpoll/LICENSE
include(CMakePackageConfigHelpers)

install(TARGETS netpoll_static netpoll_shared EXPORT netpollTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} NAMELINK_COMPONENT Development
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES include/netpoll.h ${PROJECT_BINARY_DIR}/include/netpoll_version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})

# pkg-config. Libs.private and Requires.private are what --static adds:
# the thread library, libdl where dladdr lives outside libc, and c-ares
# when the library resolves names with it.
set(NP_PC_LIBS_PRIVATE "-pthread")
foreach(l ${CMAKE_DL_LIBS})
    string(APPEND NP_PC_LIBS_PRIVATE " -l${l}")
endforeach()
set(NP_PC_REQUIRES_PRIVATE "")
if(NP_CARES_LIBS)
    set(NP_PC_REQUIRES_PRIVATE "libcares")
endif()
# The prefix is found from the .pc file's own place (${pcfiledir}), so an
# install with `cmake --install --prefix DIR`, or a moved tree, still
# points at itself. Absolute GNUInstallDirs values are kept as they are.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
    set(NP_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
    file(RELATIVE_PATH _np_up "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
    string(REGEX REPLACE "/$" "" _np_up "${_np_up}")
    set(NP_PC_PREFIX "\${pcfiledir}/${_np_up}")
endif()
foreach(d LIBDIR INCLUDEDIR)
    if(IS_ABSOLUTE "${CMAKE_INSTALL_${d}}")
        set(NP_PC_${d} "${CMAKE_INSTALL_${d}}")
    else()
        set(NP_PC_${d} "\${prefix}/${CMAKE_INSTALL_${d}}")
    endif()
endforeach()
configure_file(cmake/netpoll.pc.in ${PROJECT_BINARY_DIR}/netpoll.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/netpoll.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The CMake package.
set(NP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/netpoll)
install(EXPORT netpollTargets NAMESPACE netpoll:: DESTINATION ${NP_CMAKE_DIR})
if(NP_CARES_LIBS)
    set(NP_USES_CARES ON)
else()
    set(NP_USES_CARES OFF)
endif()
configure_package_config_file(cmake/netpollConfig.cmake.in
    ${PROJECT_BINARY_DIR}/netpollConfig.cmake INSTALL_DESTINATION ${NP_CMAKE_DIR})
# 0.x: a minor release may change the API, so only the same minor matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/netpollConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/netpollConfig.cmake
              ${PROJECT_BINARY_DIR}/netpollConfigVersion.cmake
        DESTINATION ${NP_CMAKE_DIR})
