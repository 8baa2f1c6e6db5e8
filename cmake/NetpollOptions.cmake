# Build options, compiler flags and the backend choice. The backend is chosen
# here and nowhere else.

find_package(Threads REQUIRED)
include(CheckSymbolExists)

option(NP_WERROR "Treat warnings as errors" OFF)
set(NP_SANITIZE "" CACHE STRING "Sanitizers: '', 'address' (ASan+UBSan) or 'thread' (TSan)")
set_property(CACHE NP_SANITIZE PROPERTY STRINGS "" address thread)

check_symbol_exists(epoll_create1 "sys/epoll.h" NP_HAVE_EPOLL)
check_symbol_exists(eventfd "sys/eventfd.h" NP_HAVE_EVENTFD)
check_symbol_exists(kqueue "sys/types.h;sys/event.h;sys/time.h" NP_HAVE_KQUEUE)

# kqueue: native on macOS and the BSDs; on Linux through libkqueue (found with
# pkg-config), so the contract tests can run on the backend there. It keeps a
# 64-bit tag in a pointer-sized field: 64-bit platforms only.
set(NP_KQUEUE_LIBS "")
if(NOT NP_HAVE_KQUEUE)
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
        pkg_check_modules(NP_LIBKQUEUE QUIET IMPORTED_TARGET libkqueue)
    endif()
    if(NP_LIBKQUEUE_FOUND)
        set(NP_KQUEUE_LIBS PkgConfig::NP_LIBKQUEUE)
    endif()
endif()
if(NOT NP_HAVE_KQUEUE AND NOT NP_LIBKQUEUE_FOUND)
    set(_np_kqueue_missing "unavailable on ${CMAKE_SYSTEM_NAME} without libkqueue "
        "(no native kqueue, and pkg-config found no module 'libkqueue')")
elseif(CMAKE_SIZEOF_VOID_P LESS 8)
    set(_np_kqueue_missing "unavailable on 32-bit ${CMAKE_SYSTEM_NAME} (it needs 64-bit pointers)")
else()
    set(NP_KQUEUE_AVAILABLE ON)
    set(CMAKE_REQUIRED_INCLUDES ${NP_LIBKQUEUE_INCLUDE_DIRS})
    check_symbol_exists(EVFILT_USER "sys/types.h;sys/event.h;sys/time.h" NP_HAVE_EVFILT_USER)
    unset(CMAKE_REQUIRED_INCLUDES)
endif()

# Default: the best backend for the platform.
if(NP_HAVE_EPOLL)
    set(_np_default_poller epoll)
elseif(NP_KQUEUE_AVAILABLE)
    set(_np_default_poller kqueue)
else()
    set(_np_default_poller poll)
endif()
set(NP_POLLER "${_np_default_poller}" CACHE STRING "Poller backend: epoll, poll or kqueue")
set_property(CACHE NP_POLLER PROPERTY STRINGS epoll poll kqueue)

# How a blocked epoll/poll backend is woken: eventfd (Linux) or a pipe (any POSIX).
if(NP_HAVE_EVENTFD)
    set(_np_default_wake eventfd)
else()
    set(_np_default_wake pipe)
endif()
set(NP_WAKE "${_np_default_wake}" CACHE STRING "Wake-up for epoll/poll: eventfd or pipe")
set_property(CACHE NP_WAKE PROPERTY STRINGS eventfd pipe)
if(NP_WAKE STREQUAL "eventfd" AND NOT NP_HAVE_EVENTFD)
    message(FATAL_ERROR "netpoll: NP_WAKE=eventfd but this platform has no eventfd")
endif()
set(NP_POLL_WAKEFD_SOURCE src/poller/wakefd_${NP_WAKE}.c)

# How a blocked kqueue backend is woken: an EVFILT_USER event, or a pipe where
# there is none (NetBSD < 10) and on OpenBSD, as Go does. The pipe variant is
# built wherever kqueue is, so it is tested there too.
if(NP_HAVE_EVFILT_USER AND NOT CMAKE_SYSTEM_NAME STREQUAL "OpenBSD")
    set(_np_default_kqueue_wake user)
else()
    set(_np_default_kqueue_wake pipe)
endif()
set(NP_KQUEUE_WAKE "${_np_default_kqueue_wake}" CACHE STRING "Wake-up for kqueue: user (EVFILT_USER) or pipe")
set_property(CACHE NP_KQUEUE_WAKE PROPERTY STRINGS user pipe)

if(NP_POLLER STREQUAL "epoll")
    if(NP_WAKE STREQUAL "pipe")
        set(NP_POLLER_VARIANT epoll_pipe)
    else()
        set(NP_POLLER_VARIANT epoll)
    endif()
elseif(NP_POLLER STREQUAL "kqueue")
    if(NOT NP_KQUEUE_AVAILABLE)
        message(FATAL_ERROR "netpoll: the kqueue backend is " ${_np_kqueue_missing}
                            ". Choose another backend, e.g. -DNP_POLLER=${_np_default_poller}.")
    endif()
    if(NP_KQUEUE_WAKE STREQUAL "pipe")
        set(NP_POLLER_VARIANT kqueue_pipe)
    elseif(NP_KQUEUE_WAKE STREQUAL "user" AND NP_HAVE_EVFILT_USER)
        set(NP_POLLER_VARIANT kqueue)
    else()
        message(FATAL_ERROR "netpoll: NP_KQUEUE_WAKE must be user or pipe, and user needs EVFILT_USER")
    endif()
elseif(NP_POLLER STREQUAL "poll")
    set(NP_POLLER_VARIANT poll)
else()
    message(FATAL_ERROR "netpoll: unknown NP_POLLER '${NP_POLLER}' (epoll, poll or kqueue)")
endif()

# Name lookup: c-ares (driven by the poller, cancellable) where it is
# installed, else getaddrinfo on the offload pool. NP_CARES=ON requires it.
set(NP_CARES "AUTO" CACHE STRING "Resolve names with c-ares: AUTO, ON or OFF")
set_property(CACHE NP_CARES PROPERTY STRINGS AUTO ON OFF)
set(NP_CARES_LIBS "")
if(NOT NP_CARES STREQUAL "OFF")
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
        pkg_check_modules(NP_LIBCARES QUIET IMPORTED_TARGET libcares)
    endif()
    if(NP_LIBCARES_FOUND)
        set(NP_CARES_LIBS PkgConfig::NP_LIBCARES)
    elseif(NP_CARES STREQUAL "ON")
        message(FATAL_ERROR "netpoll: NP_CARES=ON but pkg-config found no libcares (apt-get install libc-ares-dev)")
    endif()
endif()
if(NP_CARES_LIBS)
    # Everything that links the core's objects (tests, fuzzers) needs it.
    link_libraries(${NP_CARES_LIBS})
    set(NP_RESOLVER_SOURCE src/net/resolve_cares.c)
    message(STATUS "netpoll: names resolved with c-ares ${NP_LIBCARES_VERSION}")
else()
    set(NP_RESOLVER_SOURCE src/net/resolve_gai.c)
    message(STATUS "netpoll: names resolved with getaddrinfo on the offload pool (no c-ares)")
endif()

# The platform unit (src/os/os.h): futexes, thread stacks, descriptor flags,
# page release. One file per system, plus what macOS and FreeBSD share.
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    set(NP_OS_SOURCES src/os/os_linux.c src/os/fd_atomic.c)
elseif(APPLE)
    set(NP_OS_SOURCES src/os/os_darwin.c src/os/os_posix.c)
elseif(CMAKE_SYSTEM_NAME STREQUAL "FreeBSD")
    set(NP_OS_SOURCES src/os/os_freebsd.c src/os/os_posix.c src/os/fd_atomic.c)
else()
    message(FATAL_ERROR "netpoll: no platform unit (src/os/os_*.c) for ${CMAKE_SYSTEM_NAME}")
endif()
# The fallback wait-on-address (src/os/futex_table.c), instead of the
# system's futex, __ulock_wait or _umtx_op: for builds that must not use
# private calls (macOS App Store), and to test the fallback on Linux.
# ThreadSanitizer elsewhere than Linux: the table too. A signal's handler
# waits in ThreadSanitizer until the thread's next intercepted call, and
# only on Linux is the raw futex sleep cut into slices for it (os.h); a
# condition variable wait is such a call.
if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux" AND NP_SANITIZE STREQUAL "thread")
    set(NP_FUTEX_TABLE_DEFAULT ON)
else()
    set(NP_FUTEX_TABLE_DEFAULT OFF)
endif()
option(NP_FUTEX_TABLE "Wait on addresses with a mutex/condvar table, not the system's call"
       ${NP_FUTEX_TABLE_DEFAULT})
if(NP_FUTEX_TABLE)
    list(APPEND NP_OS_SOURCES src/os/futex_table.c)
    add_compile_definitions(NP_FUTEX_TABLE=1)
endif()

# Task context switch: hand-written assembly where we have it, else ucontext.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    set(_np_default_context asm)
    set(_np_ctx_asm src/runtime/ctx_x86_64.S)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
    set(_np_default_context asm)
    set(_np_ctx_asm src/runtime/ctx_aarch64.S)
else()
    set(_np_default_context ucontext)
endif()
set(NP_CONTEXT "${_np_default_context}" CACHE STRING "Task context switch: asm or ucontext")
set_property(CACHE NP_CONTEXT PROPERTY STRINGS asm ucontext)
if(NP_CONTEXT STREQUAL "asm")
    if(NOT _np_ctx_asm)
        message(FATAL_ERROR "netpoll: no hand-written context switch for ${CMAKE_SYSTEM_PROCESSOR}; use -DNP_CONTEXT=ucontext")
    endif()
    set(NP_CONTEXT_SOURCES ${_np_ctx_asm} src/runtime/ctx_asm.c)
elseif(NP_CONTEXT STREQUAL "ucontext")
    set(NP_CONTEXT_SOURCES src/runtime/ctx_ucontext.c)
    add_compile_definitions(NP_CONTEXT_UCONTEXT=1)
else()
    message(FATAL_ERROR "netpoll: NP_CONTEXT must be asm or ucontext")
endif()

set(NP_WARNINGS -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wpointer-arith -Wvla -Wformat=2)
if(NP_WERROR)
    list(APPEND NP_WARNINGS -Werror)
endif()

if(NP_SANITIZE STREQUAL "address")
    set(NP_SAN_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all
        -fno-omit-frame-pointer)
elseif(NP_SANITIZE STREQUAL "thread")
    set(NP_SAN_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT NP_SANITIZE STREQUAL "")
    message(FATAL_ERROR "netpoll: NP_SANITIZE must be '', 'address' or 'thread'")
endif()

# Frame pointers everywhere, leaf functions included: np_dump and the gdb
# script walk a parked task's stack by its frame-pointer chain.
set(NP_FRAME_FLAGS -fno-omit-frame-pointer)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    list(APPEND NP_FRAME_FLAGS -mno-omit-leaf-frame-pointer)
endif()

# Compile flags every netpoll source gets.
function(np_configure_target t)
    target_include_directories(${t} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_BINARY_DIR}/include
                               ${PROJECT_SOURCE_DIR}/src)
    target_compile_options(${t} PRIVATE $<$<COMPILE_LANGUAGE:C>:${NP_WARNINGS} ${NP_FRAME_FLAGS}> ${NP_SAN_FLAGS} -fvisibility=hidden)
    target_compile_definitions(${t} PRIVATE _GNU_SOURCE NP_BUILDING=1)
    set_target_properties(${t} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()

# Link flags for anything that contains sanitized objects.
function(np_sanitize t)
    if(NP_SAN_FLAGS)
        target_link_options(${t} PUBLIC ${NP_SAN_FLAGS})
    endif()
endfunction()
