/* The library's version, as it was built: a program compares it with the
 * header's NP_VERSION_HEX to see which library it runs against. */
#include "netpoll.h"

unsigned np_version(void)
{
    return NP_VERSION_HEX;
}

const char *np_version_string(void)
{
    return NP_VERSION_STRING;
}
