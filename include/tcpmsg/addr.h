/*
 * tcpmsg/addr.h - socket addresses: name resolution, parsing and formatting.
 *
 * struct tcpmsg_addr holds one IPv4, IPv6 or Unix-domain socket address by value (no
 * allocation, safe to copy with =). Resolution fills an array the caller provides, so there is no result list
 * to free.
 *
 *   struct tcpmsg_addr a[8];
 *   int n = tcpmsg_addr_resolve("example.org", "https", TCPMSG_FAMILY_ANY, 0, a, 8);
 *   char text[TCPMSG_ADDR_STRLEN];
 *   for (int i = 0; i < n; i++)
 *       tcpmsg_addr_format(&a[i], text, sizeof text);   // "93.184.215.14:443", "[2606::1]:443"
 *
 * Text forms are those of `ss -tn`: "127.0.0.1:8080", "[::1]:8080", "[::ffff:10.0.0.1]:80";
 * an IPv6 scope is written inside the brackets, "[fe80::1%eth0]:80", so that the text
 * parses back to the same address. A Unix-domain socket is "unix:/run/app.sock" (a path)
 * or "unix:@name" (Linux's abstract namespace: no file, gone with the last socket); wherever
 * a host is taken, such a text names that socket and the service is ignored.
 */
#ifndef TCPMSG_ADDR_H
#define TCPMSG_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "tcpmsg/error.h"
#include "tcpmsg/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which address families a call considers. */
enum tcpmsg_family {
    TCPMSG_FAMILY_ANY = 0, /* IPv4 and IPv6 */
    TCPMSG_FAMILY_V4 = 4,  /* IPv4 only */
    TCPMSG_FAMILY_V6 = 6,  /* IPv6 only */
    TCPMSG_FAMILY_UNIX = 1 /* a Unix-domain socket (tcpmsg_addr_family's answer) */
};

/* One IPv4, IPv6 or Unix-domain socket address. `len` is 0 for "no address". */
struct tcpmsg_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
        struct sockaddr_storage storage;
    } u;
    socklen_t len;
};

/* The longest Unix-domain name: sun_path less its terminating NUL (a longer one is
 * -ENAMETOOLONG, never cut). */
#define TCPMSG_UNIX_NAME_MAX 107
/* Room for any formatted address: "unix:" + a name of TCPMSG_UNIX_NAME_MAX bytes, or "[" +
 * IPv6 text + "%" + interface name + "]:" + port. */
#define TCPMSG_ADDR_STRLEN 120
/* Room for a formatted 4-tuple: two addresses and a space. */
#define TCPMSG_TUPLE_STRLEN (2 * TCPMSG_ADDR_STRLEN)

/* tcpmsg_addr_resolve flags */
#define TCPMSG_RESOLVE_PASSIVE 0x1 /* host NULL or "" means the wildcard (for listening);
                                      without it, NULL means the loopback address */
#define TCPMSG_RESOLVE_NUMERIC 0x2 /* host must be a numeric address: never query DNS */

/*
 * tcpmsg_addr_resolve - resolves host and service into at most `max` TCP addresses, in the
 * resolver's order of preference (getaddrinfo, RFC 6724), duplicates removed.
 * host: a name, a numeric IPv4/IPv6 address (brackets allowed, "[::1]"), or NULL / "" (see
 * TCPMSG_RESOLVE_PASSIVE), or "unix:/path" / "unix:@name" (one Unix-domain address, the
 * service ignored; -ENAMETOOLONG past TCPMSG_UNIX_NAME_MAX bytes). service: a port number
 * or a service name ("http"); NULL or "" means port 0. Both borrowed. out: caller storage for `max` addresses.
 * Returns the number of addresses stored (>= 1), or -EINVAL (bad argument, max 0),
 * TCPMSG_EAI_NONAME (unknown host or service), TCPMSG_EAI_AGAIN (temporary DNS failure),
 * TCPMSG_EAI_FAIL, TCPMSG_EAI_NODATA, TCPMSG_EAI_FAMILY, TCPMSG_EAI_SERVICE,
 * TCPMSG_EAI_ADDRFAMILY, TCPMSG_EAI_OTHER, -ENOMEM.
 * Blocks for as long as the system resolver takes (getaddrinfo has no deadline); numeric
 * hosts never block.
 */
TCPMSG_API int tcpmsg_addr_resolve(const char *host, const char *service,
                                   enum tcpmsg_family family, int flags,
                                   struct tcpmsg_addr *out, size_t max);

/*
 * tcpmsg_addr_split - splits "host:port", "[v6addr]:port", "[v6addr]", "v6addr" (two or more
 * colons and no brackets: all host), "host" or ":port" into host and port text. `text` is
 * borrowed; host/port receive NUL-terminated copies (a missing part is ""). Returns 0, or
 * -EINVAL (malformed: an unclosed bracket, text after "]" that is not ":port", an empty port
 * after ":", a port with characters other than letters, digits, '-' and '_') or -ENOBUFS (a part does not fit its buffer). Does not resolve.
 */
TCPMSG_API int tcpmsg_addr_split(const char *text, char *host, size_t host_cap, char *port,
                                 size_t port_cap);

/*
 * tcpmsg_addr_parse - parses a numeric address in any form tcpmsg_addr_format writes
 * ("1.2.3.4:80", "[::1]:80", "[fe80::1%lo]:80"; the port may be omitted for 0), or a
 * Unix-domain one ("unix:/run/app.sock", "unix:@name"). Never queries DNS. Returns 0,
 * -ENAMETOOLONG (a Unix name over TCPMSG_UNIX_NAME_MAX bytes), or -EINVAL for anything else
 * (a host name, an empty Unix name).
 */
TCPMSG_API int tcpmsg_addr_parse(const char *text, struct tcpmsg_addr *out);

/*
 * tcpmsg_addr_format - writes the address as text ("127.0.0.1:8080", "[::1]:8080",
 * "unix:/run/app.sock", "unix:@name"; an unnamed Unix socket, a connecting client's, is
 * "unix:") into buf (NUL-terminated; TCPMSG_ADDR_STRLEN bytes are always enough). Returns
 * the text's length, -ENOBUFS when it does not fit (buf then holds a truncated, terminated
 * string if cap > 0), -EAFNOSUPPORT for another family ("-" is written).
 */
TCPMSG_API int tcpmsg_addr_format(const struct tcpmsg_addr *a, char *buf, size_t cap);

/*
 * tcpmsg_addr_port - the address's port in host byte order, or -EAFNOSUPPORT (a Unix one).
 * tcpmsg_addr_set_port - changes the port; -EAFNOSUPPORT for an address without one.
 * tcpmsg_addr_family - TCPMSG_FAMILY_V4, _V6 or _UNIX, or 0 for no address.
 * tcpmsg_addr_equal - true when both hold the same family, address, port (and scope), or
 * the same Unix name.
 */
TCPMSG_API int tcpmsg_addr_port(const struct tcpmsg_addr *a);
TCPMSG_API int tcpmsg_addr_set_port(struct tcpmsg_addr *a, unsigned port);
TCPMSG_API int tcpmsg_addr_family(const struct tcpmsg_addr *a);
TCPMSG_API bool tcpmsg_addr_equal(const struct tcpmsg_addr *a, const struct tcpmsg_addr *b);

/*
 * tcpmsg_addr_unmap - turns an IPv4-mapped IPv6 address ([::ffff:1.2.3.4]:80, what a
 * dual-stack listener reports for an IPv4 peer) into the plain IPv4 address (1.2.3.4:80).
 * Other addresses are left unchanged. Returns true when the address was changed.
 */
TCPMSG_API bool tcpmsg_addr_unmap(struct tcpmsg_addr *a);

/*
 * tcpmsg_addr_local / tcpmsg_addr_peer - the local / remote address of socket `fd`
 * (getsockname / getpeername). Return 0, or a negated errno (-EBADF, -ENOTSOCK, -ENOTCONN).
 */
TCPMSG_API int tcpmsg_addr_local(int fd, struct tcpmsg_addr *out);
TCPMSG_API int tcpmsg_addr_peer(int fd, struct tcpmsg_addr *out);

/*
 * tcpmsg_addr_tuple - formats a connection's 4-tuple as `ss -tn` prints it: the local
 * address, one space, the peer address ("127.0.0.1:8080 127.0.0.1:50314"; over a Unix
 * socket the client is unnamed and shown by its process: "unix:/run/app.sock unix:pid=42"). buf receives
 * the NUL-terminated text (TCPMSG_TUPLE_STRLEN bytes are enough). Returns the length, or
 * the errors of tcpmsg_addr_local/peer and tcpmsg_addr_format.
 */
TCPMSG_API int tcpmsg_addr_tuple(int fd, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* TCPMSG_ADDR_H */
