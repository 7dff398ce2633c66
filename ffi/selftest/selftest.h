/* The self-test runner shared by the C test program and the Linux kernel module: it calls
 * every function of hugesept.h for every case of cases.h (generated from the Rust table,
 * ffi/src/selftest.rs) and compares the return code and outputs with Rust's. Freestanding:
 * no libc, output through the caller's print function. */
#ifndef HUGESEPT_SELFTEST_H
#define HUGESEPT_SELFTEST_H

#include "hugesept.h"

/* One case: the function, the hostile pointers, the arguments, the lpage_info words the
 * lookup answers, and what Rust gives. The numbers are those of ffi/src/selftest.rs. */
struct hugesept_case {
	uint32_t func;
	uint32_t hostile;
	uint64_t args[6];
	uint32_t lpage_2m;
	uint32_t lpage_1g;
	int32_t expect_rc;
	uint32_t n_out;
	uint64_t expect_out[9];
};

/* Prints one NUL-terminated line (without its newline). */
typedef void (*hugesept_print_fn)(void *ctx, const char *line);

struct hugesept_selftest_result {
	uint32_t cases;
	uint32_t passed;
	uint32_t failed;
	/* The digest of the outcomes (ffi/src/selftest.rs `digest_step`); equal to
	 * HUGESEPT_SELFTEST_DIGEST when every case gave Rust's result. */
	uint64_t digest;
	/* HUGESEPT_SELFTEST_DIGEST: the digest of Rust's results. */
	uint64_t expected_digest;
};

/* Runs every case; prints one line per case when `verbose`, each failure always, and the
 * summary line "hugesept selftest: N cases, P passed, F failed, digest 0x…". */
void hugesept_selftest_run(hugesept_print_fn print, void *ctx, int verbose,
			   struct hugesept_selftest_result *result);

#endif
