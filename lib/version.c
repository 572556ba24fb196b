/* SPDX-License-Identifier: MIT */
/* The library's version string. */
#include <dirtytrack/dirtytrack.h>

#define DT_STR2(x) #x
#define DT_STR(x)  DT_STR2(x)

const char *dt_version(void)
{
	return DT_STR(DT_VERSION_MAJOR) "." DT_STR(DT_VERSION_MINOR) "." DT_STR(DT_VERSION_PATCH);
}
