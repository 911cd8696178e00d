/*
 * tcpmsg.h - umbrella header: includes every public header of libtcpmsg.
 *
 *   tcpmsg/version.h   version macros and tcpmsg_version()
 *   tcpmsg/error.h     error codes, tcpmsg_strerror(), tcpmsg_errname()
 *   tcpmsg/wire.h      portable big-endian integers, floats and byte strings
 *   tcpmsg/codec.h     sans-I/O framing: length-prefixed, delimiter, fixed-size
 */
#ifndef TCPMSG_H
#define TCPMSG_H

#include "tcpmsg/version.h"
#include "tcpmsg/error.h"
#include "tcpmsg/wire.h"
#include "tcpmsg/codec.h"

#endif /* TCPMSG_H */
