/* SPDX-License-Identifier: MIT */
/*
 * tools/endpoint.h - where a migration goes: tcp:HOST:PORT or unix:PATH on the command line,
 * and listening on or connecting to it, for `dirtytrack migrate` and `dirtytrack vm`.
 */
#ifndef DT_TOOLS_ENDPOINT_H
#define DT_TOOLS_ENDPOINT_H

#include <stdbool.h>

#include <dirtytrack/dirtytrack.h>

struct endpoint {
	bool is_unix;
	char host[256]; /* empty: every address (listen only) */
	unsigned port;
	const char *path;
	const char *text; /* as given, for messages */
};

/* tcp:HOST:PORT (HOST may be [v6], empty or * for every address) or unix:PATH; ep points into
 * s. False when s is neither. */
bool endpoint_parse(const char *s, struct endpoint *ep);
/* Listen, and say where on stderr ("listening tcp HOST:PORT": a script that asked for port 0
 * reads it there). NULL after saying why, prefixed with who. */
struct dt_listener *endpoint_listen(const struct endpoint *ep, const char *who);
/* Connect (5 s timeout). NULL after saying why. */
struct dt_transport *endpoint_connect(const struct endpoint *ep, const char *who);

#endif
