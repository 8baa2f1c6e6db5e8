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

# Default: the best backend for the platform.
if(NP_HAVE_EPOLL)
    set(_np_default_poller epoll)
elseif(NP_HAVE_KQUEUE)
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
set(NP_POLL_WAKEFD_SOURCE src/wakefd_${NP_WAKE}.c)

if(NP_POLLER STREQUAL "epoll")
    if(NP_WAKE STREQUAL "pipe")
        set(NP_POLLER_VARIANT epoll_pipe)
    else()
        set(NP_POLLER_VARIANT epoll)
    endif()
elseif(NP_POLLER STREQUAL "kqueue")
    message(FATAL_ERROR "netpoll: the kqueue backend is not available yet (tracked as its own issue)")
elseif(NP_POLLER STREQUAL "poll")
    set(NP_POLLER_VARIANT poll)
else()
    message(FATAL_ERROR "netpoll: unknown NP_POLLER '${NP_POLLER}' (epoll, poll or kqueue)")
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

# Compile flags every netpoll source gets.
function(np_configure_target t)
    target_include_directories(${t} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
    target_compile_options(${t} PRIVATE ${NP_WARNINGS} ${NP_SAN_FLAGS} -fvisibility=hidden)
    target_compile_definitions(${t} PRIVATE _GNU_SOURCE NP_BUILDING=1)
    set_target_properties(${t} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()

# Link flags for anything that contains sanitized objects.
function(np_sanitize t)
    if(NP_SAN_FLAGS)
        target_link_options(${t} PUBLIC ${NP_SAN_FLAGS})
    endif()
endfunction()
