/* SPDX-License-Identifier: MIT */
/* tools/endpoint.c - migration endpoints on the command line (endpoint.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"

static bool parse_port(const char *s, unsigned *port)
{
	unsigned long v = 0;
	size_t n = strspn(s, "0123456789");

	if (!n || n > 5 || s[n])
		return false;
	v = strtoul(s, NULL, 10);
	*port = (unsigned)v;
	return v <= 65535;
}

bool endpoint_parse(const char *s, struct endpoint *ep)
{
	const char *hp, *colon;
	size_t hlen;

	memset(ep, 0, sizeof(*ep));
	ep->text = s;
	if (!strncmp(s, "unix:", 5)) {
		ep->is_unix = true;
		ep->path = s + 5;
		return *ep->path != '\0';
	}
	if (strncmp(s, "tcp:", 4))
		return false;
	hp = s + 4;
	colon = strrchr(hp, ':');
	if (!colon || !parse_port(colon + 1, &ep->port))
		return false;
	hlen = (size_t)(colon - hp);
	if (hlen >= 2 && hp[0] == '[' && hp[hlen - 1] == ']') {
		hp++;
		hlen -= 2;
	}
	if (hlen >= sizeof(ep->host) || memchr(hp, '[', hlen) || memchr(hp, ']', hlen))
		return false;
	if (!(hlen == 1 && hp[0] == '*'))
		memcpy(ep->host, hp, hlen);
	return true;
}

struct dt_listener *endpoint_listen(const struct endpoint *ep, const char *who)
{
	struct dt_listener *l;

	l = ep->is_unix ? dt_listen_unix(ep->path)
			: dt_listen_tcp(ep->host[0] ? ep->host : NULL, (uint16_t)ep->port);
	if (!l) {
		fprintf(stderr, "%s: cannot listen on %s: %s\n", who, ep->text, strerror(errno));
		return NULL;
	}
	/* Machine-readable: a script that asked for port 0 reads the port here. */
	if (ep->is_unix)
		fprintf(stderr, "listening unix %s\n", ep->path);
	else if (strchr(ep->host, ':'))
		fprintf(stderr, "listening tcp [%s]:%u\n", ep->host, dt_listener_port(l));
	else
		fprintf(stderr, "listening tcp %s:%u\n", ep->host[0] ? ep->host : "*",
			dt_listener_port(l));
	return l;
}

struct dt_transport *endpoint_connect(const struct endpoint *ep, const char *who)
{
	struct dt_transport *t = ep->is_unix ? dt_connect_unix(ep->path, 5000)
					     : dt_connect_tcp(ep->host, (uint16_t)ep->port, 5000);

	if (!t)
		fprintf(stderr, "%s: cannot connect to %s: %s\n", who, ep->text, strerror(errno));
	return t;
}
