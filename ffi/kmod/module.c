// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * hugesept_selftest: links hugesept-core's C ABI (libhugesept) into the running kernel and,
 * at init, runs the self-test table the C test program runs (selftest.c over cases.h),
 * printing one line per case and the summary through printk. Init fails with -EINVAL when a
 * case fails, so the load itself reports the result.
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/printk.h>

#include "hugesept.h"
#include "selftest.h"

static void hugesept_print(void *ctx, const char *line)
{
	pr_info("%s\n", line);
}

static int __init hugesept_selftest_init(void)
{
	struct hugesept_selftest_result r = { 0, 0, 0 };

	pr_info("hugesept: ABI %u, state %zu bytes aligned to %zu\n", hugesept_abi_version(),
		hugesept_vcpu_size(), hugesept_vcpu_align());
	hugesept_selftest_run(hugesept_print, NULL, 1, &r);
	if (r.cases == 0 || r.failed != 0 || r.passed != r.cases)
		return -EINVAL;
	return 0;
}

static void __exit hugesept_selftest_exit(void)
{
}

module_init(hugesept_selftest_init);
module_exit(hugesept_selftest_exit);

MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("hugesept-core's C ABI linked into the kernel, with its self-test table");
