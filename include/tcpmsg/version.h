/*
 * tcpmsg/version.h - library version and the export macro.
 *
 * This header is the single source of truth for the version: CMake reads the three
 * TCPMSG_VERSION_* numbers below when it configures the project.
 */
#ifndef TCPMSG_VERSION_H
#define TCPMSG_VERSION_H

#define TCPMSG_VERSION_MAJOR 0
#define TCPMSG_VERSION_MINOR 1
#define TCPMSG_VERSION_PATCH 0

/* The version as one comparable number: major * 10000 + minor * 100 + patch. */
#define TCPMSG_VERSION                                                                             \
    (TCPMSG_VERSION_MAJOR * 10000 + TCPMSG_VERSION_MINOR * 100 + TCPMSG_VERSION_PATCH)

#define TCPMSG__STR2(x) #x
#define TCPMSG__STR(x) TCPMSG__STR2(x)
/* The version as text, e.g. "0.1.0". */
#define TCPMSG_VERSION_STRING                                                                      \
    TCPMSG__STR(TCPMSG_VERSION_MAJOR)                                                              \
    "." TCPMSG__STR(TCPMSG_VERSION_MINOR) "." TCPMSG__STR(TCPMSG_VERSION_PATCH)

/*
 * TCPMSG_API marks the functions the shared library exports. The library is compiled with
 * hidden visibility, so anything without this mark stays internal. Harmless for users.
 */
#if defined(__GNUC__) || defined(__clang__)
#define TCPMSG_API __attribute__((visibility("default")))
#else
#define TCPMSG_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*
 * tcpmsg_version - the version of the library actually loaded at run time, as
 * TCPMSG_VERSION computes it. Compare with TCPMSG_VERSION to detect a header/library mismatch.
 * Never fails.
 */
TCPMSG_API int tcpmsg_version(void);

/*
 * tcpmsg_version_string - the run-time library version as static text, e.g. "0.1.0".
 * The string is owned by the library and never freed. Never fails.
 */
TCPMSG_API const char *tcpmsg_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* TCPMSG_VERSION_H */
