/* The self-test runner: every case of cases.h through the functions of hugesept.h, the way a
 * kernel or firmware caller uses them, compared with what Rust's typed API gives (the
 * expected values in the table). It mirrors ffi/src/selftest.rs `run`, which the UEFI
 * application uses. Freestanding C: no libc, no allocation; built into the C test program
 * and into the Linux kernel module. */

#include "selftest.h"
#include "cases.h"

#define STATE_BYTES (HUGESEPT_VCPU_SIZE + 8)

/* Room for any output struct, 8-byte aligned so that +1 is misaligned. */
union out_buf {
	uint64_t words[12];
	unsigned char bytes[96];
};

union state_buf {
	uint64_t words[STATE_BYTES / 8];
	unsigned char bytes[STATE_BYTES];
};

struct lookup_ctx {
	uint32_t lpage_2m;
	uint32_t lpage_1g;
	int fails;
};

static int32_t case_lookup(void *ctx, uint64_t gfn, uint32_t level, uint32_t *disallow_lpage)
{
	const struct lookup_ctx *c = ctx;

	(void)gfn;
	if (c->fails)
		return -1;
	if (level == HUGESEPT_LEVEL_2M)
		*disallow_lpage = c->lpage_2m;
	else if (level == HUGESEPT_LEVEL_1G)
		*disallow_lpage = c->lpage_1g;
	else
		return -1;
	return 0;
}

struct outcome {
	int32_t rc;
	uint64_t out[9];
};

static void set_words(struct outcome *o, const uint64_t *w, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < 9; i++)
		o->out[i] = i < n ? w[i] : 0;
}

static uint64_t name_hash(const char *s, uint64_t *len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint64_t n = 0;

	for (; s[n]; n++)
		h = (h ^ (unsigned char)s[n]) * 0x00000100000001b3ull;
	*len = n;
	return h;
}

static void exit_words(const struct hugesept_exit *e, uint64_t *w)
{
	w[0] = e->exit_qualification;
	w[1] = e->gpa;
	w[2] = e->gfn;
	w[3] = e->kind;
	w[4] = e->eeq_type;
	w[5] = e->accept_level;
	w[6] = e->error_level;
	w[7] = e->error_state;
	w[8] = e->error_is_leaf;
}

static uint32_t arg32(uint64_t v)
{
	return v > 0xffffffffull ? 0xffffffffu : (uint32_t)v;
}

static void run_case(const struct hugesept_case *c, struct outcome *o)
{
	union state_buf state;
	union out_buf outbuf;
	struct lookup_ctx ctx = { c->lpage_2m, c->lpage_1g,
				  (c->hostile & HUGESEPT_SELFTEST_HOSTILE_LOOKUP_FAILS) != 0 };
	struct hugesept_vcpu *vcpu;
	void *out;
	hugesept_lpage_lookup lookup = case_lookup;
	const uint64_t *a = c->args;
	uint64_t w[9] = { 0 };
	unsigned int i;
	int32_t rc = HUGESEPT_OK;

	for (i = 0; i < STATE_BYTES / 8; i++)
		state.words[i] = 0;
	for (i = 0; i < 12; i++)
		outbuf.words[i] = 0;
	if (c->hostile & HUGESEPT_SELFTEST_HOSTILE_NULL_STATE)
		vcpu = NULL;
	else if (c->hostile & HUGESEPT_SELFTEST_HOSTILE_UNALIGNED_STATE)
		vcpu = (struct hugesept_vcpu *)(state.bytes + 1);
	else
		vcpu = (struct hugesept_vcpu *)state.bytes;
	if (c->hostile & HUGESEPT_SELFTEST_HOSTILE_NULL_OUT)
		out = NULL;
	else if (c->hostile & HUGESEPT_SELFTEST_HOSTILE_UNALIGNED_OUT)
		out = outbuf.bytes + 1;
	else
		out = outbuf.bytes;
	if (c->hostile & HUGESEPT_SELFTEST_HOSTILE_NULL_LOOKUP)
		lookup = NULL;

	/* The state the functions that take one are called with: initialised for the case's
	 * design, or garbage. */
	if (c->hostile & HUGESEPT_SELFTEST_HOSTILE_GARBAGE_STATE) {
		for (i = 0; i < STATE_BYTES; i++)
			state.bytes[i] = 0xa5;
	} else if (c->func != HUGESEPT_SELFTEST_FN_VCPU_INIT &&
		   c->func != HUGESEPT_SELFTEST_FN_DECODE_EXIT &&
		   c->func != HUGESEPT_SELFTEST_FN_PLAN_EXIT && c->func < HUGESEPT_SELFTEST_FN_ACCEPT_OPERAND) {
		rc = hugesept_vcpu_init((struct hugesept_vcpu *)state.bytes, HUGESEPT_VCPU_SIZE,
					arg32(a[0]));
	}
	if (rc != HUGESEPT_OK)
		goto done;

	switch (c->func) {
	case HUGESEPT_SELFTEST_FN_VCPU_INIT: {
		uint32_t policy = 0;

		rc = hugesept_vcpu_init(vcpu, a[1] > (uint64_t)(size_t)-1 ? (size_t)-1 : (size_t)a[1],
					arg32(a[0]));
		if (rc != HUGESEPT_OK)
			break;
		rc = hugesept_vcpu_policy(vcpu, out);
		if (rc == HUGESEPT_OK)
			policy = *(uint32_t *)out;
		w[0] = policy;
		break;
	}
	case HUGESEPT_SELFTEST_FN_DECODE_EXIT:
		rc = hugesept_decode_exit(a[0], a[1], a[2], arg32(a[3]), out);
		if (rc == HUGESEPT_OK)
			exit_words(out, w);
		break;
	case HUGESEPT_SELFTEST_FN_PLAN_EXIT: {
		struct hugesept_exit exit;
		const struct hugesept_plan *p = out;
		uint32_t hook = 0;

		rc = hugesept_decode_exit(a[1], a[2], a[3], arg32(a[4]), &exit);
		if (rc != HUGESEPT_OK)
			break;
		if (!(c->hostile & HUGESEPT_SELFTEST_HOSTILE_GARBAGE_STATE)) {
			rc = hugesept_vcpu_init((struct hugesept_vcpu *)state.bytes,
						HUGESEPT_VCPU_SIZE, arg32(a[0]));
			if (rc != HUGESEPT_OK)
				break;
		}
		rc = hugesept_plan_exit(vcpu, &exit, arg32(a[4]), lookup, &ctx, out);
		if (rc != HUGESEPT_OK)
			break;
		w[0] = p->action;
		w[1] = p->fault_max_level;
		w[2] = p->split_start_gfn;
		w[3] = p->split_end_gfn;
		w[4] = p->split_above_level;
		w[5] = p->inhibit_levels;
		rc = hugesept_private_max_mapping_level(vcpu, exit.gfn, arg32(a[5]), &hook);
		w[6] = hook;
		break;
	}
	case HUGESEPT_SELFTEST_FN_MAX_MAPPING_LEVEL:
		rc = hugesept_max_mapping_level(vcpu, a[1], arg32(a[2]), arg32(a[3]), arg32(a[4]),
						lookup, &ctx, out);
		if (rc == HUGESEPT_OK)
			w[0] = *(uint32_t *)out;
		break;
	case HUGESEPT_SELFTEST_FN_PRIVATE_MAX_MAPPING_LEVEL:
		rc = hugesept_private_max_mapping_level(vcpu, a[1], arg32(a[2]), out);
		if (rc == HUGESEPT_OK)
			w[0] = *(uint32_t *)out;
		break;
	case HUGESEPT_SELFTEST_FN_ON_HUGE_LEAF: {
		uint32_t hook = 0;

		rc = hugesept_on_huge_leaf(vcpu, a[1], arg32(a[2]), arg32(a[3]), out);
		if (rc != HUGESEPT_OK)
			break;
		w[0] = *(uint32_t *)out;
		rc = hugesept_private_max_mapping_level(vcpu, a[1], HUGESEPT_TD_RUNNABLE, &hook);
		w[1] = hook;
		break;
	}
	case HUGESEPT_SELFTEST_FN_ACCEPT_OPERAND: {
		struct hugesept_accept_operand_fields back = { 0, 0 };

		rc = hugesept_accept_operand(a[0], arg32(a[1]), arg32(a[2]), out);
		if (rc != HUGESEPT_OK)
			break;
		w[0] = *(uint64_t *)out;
		rc = hugesept_decode_accept_operand(w[0], arg32(a[2]), &back);
		w[1] = back.gpa;
		w[2] = back.level;
		break;
	}
	case HUGESEPT_SELFTEST_FN_DECODE_ACCEPT_OPERAND:
		rc = hugesept_decode_accept_operand(a[0], arg32(a[1]), out);
		if (rc == HUGESEPT_OK) {
			const struct hugesept_accept_operand_fields *op = out;

			w[0] = op->gpa;
			w[1] = op->level;
		}
		break;
	case HUGESEPT_SELFTEST_FN_ACCEPT_STATUS:
		rc = hugesept_accept_status(arg32(a[0]), arg32(a[1]), a[2], arg32(a[3]), out);
		if (rc == HUGESEPT_OK) {
			const struct hugesept_accept_outcome *r = out;

			w[0] = r->status_code;
			w[1] = r->status_class;
			w[2] = r->detail_level;
			w[3] = r->reaction;
			w[4] = r->next_retries;
		}
		break;
	case HUGESEPT_SELFTEST_FN_NAME: {
		const char *name;
		uint32_t id = 0;

		if (a[0] == 0)
			name = hugesept_policy_name(arg32(a[1]));
		else if (a[0] == 1)
			name = hugesept_guest_name(arg32(a[1]));
		else
			name = hugesept_error_name((int32_t)(uint32_t)a[1]);
		if (!name) {
			w[0] = ~0ull;
			w[2] = ~0ull;
			break;
		}
		w[1] = name_hash(name, &w[0]);
		w[2] = ~0ull;
		if (a[0] == 0 &&
		    hugesept_policy_lookup((const uint8_t *)name, (size_t)w[0], &id) == HUGESEPT_OK)
			w[2] = id;
		break;
	}
	default:
		rc = HUGESEPT_ERR_INVALID_ARGUMENT;
	}
done:
	o->rc = rc;
	if (rc == HUGESEPT_OK)
		set_words(o, w, 9);
	else
		set_words(o, w, 0);
}

/* A line under construction. */
struct line {
	char buf[200];
	unsigned int len;
};

static void put_str(struct line *l, const char *s)
{
	while (*s && l->len + 1 < sizeof(l->buf))
		l->buf[l->len++] = *s++;
	l->buf[l->len] = 0;
}

static void put_dec(struct line *l, int64_t v)
{
	char tmp[24];
	unsigned int n = 0;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	if (v < 0)
		put_str(l, "-");
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	while (n) {
		char s[2] = { tmp[--n], 0 };

		put_str(l, s);
	}
}

static void put_hex(struct line *l, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	char s[19];
	int i;

	s[0] = '0';
	s[1] = 'x';
	for (i = 0; i < 16; i++)
		s[2 + i] = digits[(v >> (60 - 4 * i)) & 0xf];
	s[18] = 0;
	put_str(l, s);
}

static const char *func_name(uint32_t func)
{
	static const char *const names[] = {
		"?", "vcpu_init", "decode_exit", "plan_exit", "max_mapping_level",
		"private_max_mapping_level", "on_huge_leaf", "accept_operand",
		"decode_accept_operand", "accept_status", "name",
	};

	return func < sizeof(names) / sizeof(names[0]) ? names[func] : "?";
}

static const char *rc_name(int32_t rc)
{
	const char *n = hugesept_error_name(rc);

	return n ? n : "unknown code";
}

void hugesept_selftest_run(hugesept_print_fn print, void *ctx, int verbose,
			   struct hugesept_selftest_result *result)
{
	uint32_t i, passed = 0, failed = 0;
	uint64_t digest = 0xcbf29ce484222325ull;
	struct line l;

	for (i = 0; i < HUGESEPT_SELFTEST_CASE_COUNT; i++) {
		const struct hugesept_case *c = &hugesept_selftest_cases[i];
		struct outcome o;
		unsigned int k, bad = 9;

		run_case(c, &o);
		digest = (digest ^ (uint64_t)(uint32_t)o.rc) * 0x00000100000001b3ull;
		for (k = 0; k < 9; k++)
			digest = (digest ^ o.out[k]) * 0x00000100000001b3ull;
		for (k = 0; k < 9; k++) {
			if (o.out[k] != c->expect_out[k]) {
				bad = k;
				break;
			}
		}
		l.len = 0;
		l.buf[0] = 0;
		put_str(&l, "hugesept: case ");
		put_dec(&l, i);
		put_str(&l, " ");
		put_str(&l, func_name(c->func));
		if (o.rc == c->expect_rc && bad == 9) {
			passed++;
			if (!verbose)
				continue;
			put_str(&l, ": ok, ");
			put_str(&l, rc_name(o.rc));
		} else {
			failed++;
			put_str(&l, ": FAILED, ");
			put_str(&l, rc_name(o.rc));
			if (o.rc != c->expect_rc) {
				put_str(&l, " where Rust gives ");
				put_str(&l, rc_name(c->expect_rc));
			} else {
				put_str(&l, ", word ");
				put_dec(&l, bad);
				put_str(&l, " ");
				put_hex(&l, o.out[bad]);
				put_str(&l, " where Rust gives ");
				put_hex(&l, c->expect_out[bad]);
			}
		}
		print(ctx, l.buf);
	}
	l.len = 0;
	put_str(&l, "hugesept selftest: ");
	put_dec(&l, HUGESEPT_SELFTEST_CASE_COUNT);
	put_str(&l, " cases, ");
	put_dec(&l, passed);
	put_str(&l, " passed, ");
	put_dec(&l, failed);
	put_str(&l, " failed, digest ");
	put_hex(&l, digest);
	print(ctx, l.buf);
	if (result) {
		result->cases = HUGESEPT_SELFTEST_CASE_COUNT;
		result->passed = passed;
		result->failed = failed;
		result->digest = digest;
		result->expected_digest = HUGESEPT_SELFTEST_DIGEST;
	}
}
