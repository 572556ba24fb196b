/* SPDX-License-Identifier: MIT */
/*
 * migrate/stats_json.c - one round's stats as one JSON object, and the names of verdicts and
 * decisions.
 *
 * dt_round_stats_json() behaves as snprintf: it writes at most len bytes (NUL included, when
 * len > 0) and returns the length the whole object needs, so a caller can size a buffer
 * with a first call (NULL, 0). Numbers are integers or fixed-point with three decimals,
 * formatted without printf's %f (which follows the locale's decimal point: JSON has only
 * '.'); a value that is unknown or not finite is null.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include <dirtytrack/migrate.h>

/* The keys of "dirty", in enum dt_dirty_class order. */
static const char *const class_keys[] = {"cpu", "vmm", "pinned", "device", "whole"};
_Static_assert(sizeof(class_keys) / sizeof(class_keys[0]) == DT_NCLASSES,
	       "a key for every dirty class");

const char *dt_verdict_name(enum dt_verdict v)
{
	switch (v) {
	case DT_VERDICT_UNKNOWN:
		return "unknown";
	case DT_VERDICT_CONVERGING:
		return "converging";
	case DT_VERDICT_STALLED:
		return "stalled";
	case DT_VERDICT_DIVERGING:
		return "diverging";
	}
	return "invalid";
}

const char *dt_decision_name(enum dt_decision d)
{
	switch (d) {
	case DT_DECISION_CONTINUE:
		return "continue";
	case DT_DECISION_SWITCHOVER:
		return "switchover";
	case DT_DECISION_GIVE_UP:
		return "give_up";
	case DT_DECISION_ASK:
		return "ask";
	}
	return "invalid";
}

/* An output buffer that counts what did not fit. */
struct jbuf {
	char *buf;
	size_t len;
	size_t need; /* bytes the whole text takes so far, NUL excluded */
};

__attribute__((format(printf, 2, 3))) static void put(struct jbuf *j, const char *fmt, ...)
{
	size_t room = j->need < j->len ? j->len - j->need : 0;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(room ? j->buf + j->need : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		j->need += (size_t)n;
}

/* "key":value with three decimals, or "key":null. No libm. */
static void put_fixed3(struct jbuf *j, const char *key, double x)
{
	double mag = x < 0 ? -x : x;
	uint64_t milli;

	if (!(mag < 0x1p62)) { /* also NaN */
		put(j, ",\"%s\":null", key);
		return;
	}
	milli = (uint64_t)(mag * 1000 + 0.5);
	put(j, ",\"%s\":%s%llu.%03llu", key, x < 0 && milli ? "-" : "",
	    (unsigned long long)(milli / 1000), (unsigned long long)(milli % 1000));
}

static void put_u64(struct jbuf *j, const char *key, uint64_t v)
{
	put(j, ",\"%s\":%llu", key, (unsigned long long)v);
}

int dt_round_stats_json(const struct dt_round_stats *s, char *buf, size_t len)
{
	struct jbuf j = {.buf = buf, .len = len};

	if (!s || (!buf && len))
		return -EINVAL;
	put(&j, "{\"round\":%u,\"dirty\":{", s->round);
	for (unsigned c = 0; c < DT_NCLASSES; c++)
		put(&j, "%s\"%s\":%llu", c ? "," : "", class_keys[c],
		    (unsigned long long)s->dirty[c]);
	put(&j, "}");
	put_u64(&j, "dirty_pages", s->dirty_pages);
	put_u64(&j, "pinned_pages", s->pinned_pages);
	put_u64(&j, "sent_pages", s->sent_pages);
	put_u64(&j, "zero_pages", s->zero_pages);
	put_u64(&j, "sent_bytes", s->sent_bytes);
	put(&j, ",\"queued_bytes\":%lld", (long long)s->queued_bytes);
	put_u64(&j, "backlog_bytes", s->backlog_bytes);
	put_u64(&j, "total_bytes", s->total_bytes);
	put_fixed3(&j, "send_ms", s->send_ns / 1e6);
	put_fixed3(&j, "round_ms", s->round_ns / 1e6);
	put_fixed3(&j, "dirty_rate", s->dirty_rate);
	put_fixed3(&j, "bandwidth_mbps", s->bandwidth / 1e6);
	put_fixed3(&j, "predicted_downtime_ms",
		   s->predicted_downtime_ns == UINT64_MAX ? NAN : s->predicted_downtime_ns / 1e6);
	put(&j, ",\"verdict\":\"%s\",\"decision\":\"%s\"}", dt_verdict_name(s->verdict),
	    dt_decision_name(s->decision));
	return j.need > INT32_MAX ? -EOVERFLOW : (int)j.need;
}
