/* tcpmsg/error.h and tcpmsg/version.h: every code has a name and a text. */
#include "testutil.h"

#include "tcpmsg/error.h"
#include "tcpmsg/version.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int code;
    const char *name;
} codes[] = {
    {TCPMSG_EOF, "TCPMSG_EOF"},
    {TCPMSG_EIDLE, "TCPMSG_EIDLE"},
    {TCPMSG_ESLOW, "TCPMSG_ESLOW"},
    {TCPMSG_EFULL, "TCPMSG_EFULL"},
    {TCPMSG_ETLS, "TCPMSG_ETLS"},
    {TCPMSG_ETLSALERT, "TCPMSG_ETLSALERT"},
    {TCPMSG_ECERTUNTRUSTED, "TCPMSG_ECERTUNTRUSTED"},
    {TCPMSG_ECERTEXPIRED, "TCPMSG_ECERTEXPIRED"},
    {TCPMSG_ECERTNAME, "TCPMSG_ECERTNAME"},
    {TCPMSG_ECERTMISSING, "TCPMSG_ECERTMISSING"},
    {TCPMSG_ETLSVERSION, "TCPMSG_ETLSVERSION"},
    {TCPMSG_ETLSTRUNC, "TCPMSG_ETLSTRUNC"},
    {TCPMSG_EPROXY, "TCPMSG_EPROXY"},
    {TCPMSG_ELIMIT, "TCPMSG_ELIMIT"},
    {TCPMSG_EAI_AGAIN, "TCPMSG_EAI_AGAIN"},
    {TCPMSG_EAI_FAIL, "TCPMSG_EAI_FAIL"},
    {TCPMSG_EAI_NONAME, "TCPMSG_EAI_NONAME"},
    {TCPMSG_EAI_NODATA, "TCPMSG_EAI_NODATA"},
    {TCPMSG_EAI_FAMILY, "TCPMSG_EAI_FAMILY"},
    {TCPMSG_EAI_SERVICE, "TCPMSG_EAI_SERVICE"},
    {TCPMSG_EAI_ADDRFAMILY, "TCPMSG_EAI_ADDRFAMILY"},
    {TCPMSG_EAI_OTHER, "TCPMSG_EAI_OTHER"},
};

START_TEST(every_library_code)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ck_assert_str_eq(tcpmsg_errname(codes[i].code), codes[i].name);
        const char *t = tcpmsg_strerror(codes[i].code);
        ck_assert_str_ne(t, "unknown error");
        ck_assert_uint_gt(strlen(t), 5);
        ck_assert(codes[i].code < -4095); /* outside errno's range */
        for (size_t j = 0; j < i; j++)
            ck_assert_int_ne(codes[i].code, codes[j].code);
    }
}
END_TEST

START_TEST(header_lists_no_other_code)
{
    /* Every enumerator of error.h is in the table above: adding a code without a name and
     * a text fails here. */
    FILE *f = fopen(TCPMSG_TEST_INCDIR "/tcpmsg/error.h", "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    size_t found = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64];
        if (sscanf(line, " %63[A-Z_] = -%*d", name) == 1 && strncmp(name, "TCPMSG_E", 8) == 0) {
            size_t i;
            for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
                if (strcmp(codes[i].name, name) == 0)
                    break;
            ck_assert_msg(i < sizeof codes / sizeof codes[0], "%s is not tested", name);
            found++;
        }
    }
    fclose(f);
    ck_assert_uint_eq(found, sizeof codes / sizeof codes[0]);
}
END_TEST

START_TEST(errno_values)
{
    /* The vocabulary, with the library's own wording. */
    ck_assert_str_eq(tcpmsg_errname(-EMSGSIZE), "EMSGSIZE");
    ck_assert_str_eq(tcpmsg_errname(-EPROTO), "EPROTO");
    ck_assert_str_eq(tcpmsg_errname(-ETIMEDOUT), "ETIMEDOUT");
    ck_assert_str_eq(tcpmsg_errname(-ECONNRESET), "ECONNRESET");
    ck_assert_str_eq(tcpmsg_errname(-EPIPE), "EPIPE");
    ck_assert_str_eq(tcpmsg_errname(-EINVAL), "EINVAL");
    ck_assert_str_eq(tcpmsg_errname(-ENOMEM), "ENOMEM");
    ck_assert_str_eq(tcpmsg_strerror(-EMSGSIZE), "frame larger than the configured limit");
    /* Positive errno values are accepted too. */
    ck_assert_str_eq(tcpmsg_errname(EPROTO), "EPROTO");
    ck_assert_str_eq(tcpmsg_strerror(EPROTO), tcpmsg_strerror(-EPROTO));
    /* Any other errno comes from the C library. */
    ck_assert_str_eq(tcpmsg_errname(-ENOENT), "ENOENT");
    ck_assert_str_ne(tcpmsg_strerror(-ENOENT), "unknown error");
    for (int e = 1; e < 134; e++) {
        ck_assert_ptr_nonnull(tcpmsg_strerror(-e));
        ck_assert_ptr_nonnull(tcpmsg_errname(-e));
    }
    ck_assert_str_eq(tcpmsg_errname(0), "OK");
    ck_assert_str_eq(tcpmsg_strerror(0), "success");
    ck_assert_str_eq(tcpmsg_errname(-4500), "EUNKNOWN");
    ck_assert_str_eq(tcpmsg_strerror(-4500), "unknown error");
    ck_assert_str_eq(tcpmsg_strerror(123456), "unknown error");
    ck_assert_str_eq(tcpmsg_errname(-2147483647 - 1), "EUNKNOWN");
}
END_TEST

START_TEST(version)
{
    ck_assert_int_eq(tcpmsg_version(), TCPMSG_VERSION);
    ck_assert_str_eq(tcpmsg_version_string(), TCPMSG_VERSION_STRING);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", TCPMSG_VERSION_MAJOR, TCPMSG_VERSION_MINOR,
             TCPMSG_VERSION_PATCH);
    ck_assert_str_eq(tcpmsg_version_string(), want);
}
END_TEST

static Suite *
make_suite(void)
{
    Suite *s = suite_create("error");
    TCase *t = tcase_create("error");
    tcase_add_test(t, every_library_code);
    tcase_add_test(t, header_lists_no_other_code);
    tcase_add_test(t, errno_values);
    tcase_add_test(t, version);
    suite_add_tcase(s, t);
    return s;
}

int
main(void)
{
    return tu_run(make_suite());
}
