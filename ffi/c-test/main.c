/* The C test program: links libhugesept.a, checks the ABI's sizes and version, then runs the
 * self-test table (selftest.c) and exits non-zero on any failure. `-v` prints every case. */

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hugesept.h"
#include "selftest.h"

static void print_line(void *ctx, const char *line)
{
	(void)ctx;
	puts(line);
}

static unsigned int checks;

static int check(int ok, const char *what)
{
	checks++;
	if (!ok)
		printf("hugesept c-test: FAILED: %s\n", what);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct hugesept_selftest_result r;
	int verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
	int bad = 0;
	/* A state the way a kernel embeds one: a buffer of the exported size and alignment. */
	alignas(HUGESEPT_VCPU_ALIGN) unsigned char state[HUGESEPT_VCPU_SIZE];
	struct hugesept_exit exit;
	struct hugesept_plan plan;

	bad += check(hugesept_abi_version() == HUGESEPT_ABI_VERSION, "ABI version");
	bad += check(hugesept_vcpu_size() == HUGESEPT_VCPU_SIZE, "state size");
	bad += check(hugesept_vcpu_align() == HUGESEPT_VCPU_ALIGN, "state alignment");
	bad += check(sizeof(struct hugesept_exit) == 48, "struct hugesept_exit is 48 bytes");
	bad += check(sizeof(struct hugesept_plan) == 32, "struct hugesept_plan is 32 bytes");
	bad += check(sizeof(struct hugesept_accept_outcome) == 20, "struct hugesept_accept_outcome");
	bad += check(hugesept_vcpu_init((struct hugesept_vcpu *)state, sizeof(state),
					HUGESEPT_POLICY_GUEST_INHIBIT) == HUGESEPT_OK,
		     "init a stack state");
	/* The first call of a kernel's EPT-violation handler, all-ones registers. */
	memset(&exit, 0x5a, sizeof(exit));
	bad += check(hugesept_decode_exit(~0ull, ~0ull, ~0ull, 52, &exit) < 0,
		     "all-ones registers are refused");
	bad += check(exit.gpa == 0x5a5a5a5a5a5a5a5aull, "no output on an error");
	bad += check(hugesept_plan_exit((struct hugesept_vcpu *)state, NULL, 48, NULL, NULL,
					&plan) == HUGESEPT_ERR_NULL_POINTER,
		     "null exit");

	hugesept_selftest_run(print_line, NULL, verbose, &r);
	bad += check(r.digest == r.expected_digest, "the digest is the table's");
	if (bad || r.failed || r.passed != r.cases || r.cases == 0) {
		printf("hugesept c-test: %d ABI checks failed, %u of %u cases failed\n", bad,
		       r.failed, r.cases);
		return EXIT_FAILURE;
	}
	printf("hugesept c-test: %u passed, 0 failed\n", r.passed + checks);
	return EXIT_SUCCESS;
}
