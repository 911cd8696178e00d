/* bench_hist.h - the load generators' latency histogram: log-linear, 32 sub-buckets per
 * power of two of nanoseconds (3% error), and their nanosecond clock. */
#ifndef TCPMSG_BENCH_HIST_H
#define TCPMSG_BENCH_HIST_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define SUB 32
#define NBUCKETS (64 * SUB)
struct hist {
    uint64_t n[NBUCKETS];
    uint64_t count;
};

static inline int
bucket(uint64_t ns)
{
    if (ns < SUB)
        return (int)ns;
    int msb = 63 - __builtin_clzll(ns);
    int shift = msb - 5; /* log2(SUB) */
    return (shift + 1) * SUB + (int)((ns >> shift) & (SUB - 1));
}

static inline void
hist_add(struct hist *h, uint64_t ns)
{
    h->n[bucket(ns)]++;
    h->count++;
}

static inline void
hist_merge(struct hist *into, const struct hist *h)
{
    for (int b = 0; b < NBUCKETS; b++)
        into->n[b] += h->n[b];
    into->count += h->count;
}

static inline double
bucket_value(int b)
{
    if (b < SUB)
        return b;
    int shift = b / SUB - 1;
    return (double)((uint64_t)(SUB + b % SUB) << shift) * (1 + 0.5 / SUB);
}

static inline double
percentile(const struct hist *h, double p)
{
    uint64_t want = (uint64_t)ceil(p * (double)h->count), seen = 0;
    for (int b = 0; b < NBUCKETS; b++) {
        seen += h->n[b];
        if (seen >= want && h->n[b])
            return bucket_value(b);
    }
    return 0;
}

/* The result line every load generator prints: one JSON object on stdout. */
static inline void
print_result(int conns, int depth, size_t size, double elapsed, uint64_t msgs, uint64_t bytes,
             const struct hist *h, uint64_t errors, uint64_t all)
{
    printf("{\"conns\": %d, \"depth\": %d, \"size\": %zu, \"seconds\": %.3f, "
           "\"msgs_per_s\": %.0f, \"mb_per_s\": %.2f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
           "\"p999_us\": %.1f, \"errors\": %llu, \"total_msgs\": %llu}\n",
           conns, depth, size, elapsed, (double)msgs / elapsed, (double)bytes / elapsed / 1e6,
           percentile(h, 0.50) / 1e3, percentile(h, 0.99) / 1e3, percentile(h, 0.999) / 1e3,
           (unsigned long long)errors, (unsigned long long)all);
    fflush(stdout);
}

#endif
