#include "tcpmsg/version.h"

int
tcpmsg_version(void)
{
    return TCPMSG_VERSION;
}

const char *
tcpmsg_version_string(void)
{
    return TCPMSG_VERSION_STRING;
}
