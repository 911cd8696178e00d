/*
 * tcpmsg.h - umbrella header: includes every public header of libtcpmsg.
 *
 *   tcpmsg/version.h   version macros and tcpmsg_version()
 *   tcpmsg/error.h     error codes, tcpmsg_strerror(), tcpmsg_errname()
 *   tcpmsg/wire.h      portable big-endian integers, floats and byte strings
 *   tcpmsg/codec.h     sans-I/O framing: length-prefixed, delimiter, fixed-size
 *   tcpmsg/deadline.h  absolute deadlines on the monotonic clock
 *   tcpmsg/addr.h      name resolution, address parsing and formatting, the 4-tuple
 *   tcpmsg/sock.h      listen (dual stack), accept, connect (Happy Eyeballs), options
 *   tcpmsg/conn.h      message connections: whole framed messages over a socket
 *   tcpmsg/server.h    one handler, five server models (iterative ... epoll)
 */
#ifndef TCPMSG_H
#define TCPMSG_H

#include "tcpmsg/version.h"
#include "tcpmsg/error.h"
#include "tcpmsg/wire.h"
#include "tcpmsg/codec.h"
#include "tcpmsg/deadline.h"
#include "tcpmsg/addr.h"
#include "tcpmsg/sock.h"
#include "tcpmsg/conn.h"
#include "tcpmsg/proxy.h"
#include "tcpmsg/tls.h"
#include "tcpmsg/server.h"

#endif /* TCPMSG_H */
