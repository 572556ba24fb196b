/* SPDX-License-Identifier: MIT */
/*
 * dirtytrack/dirtytrack.h - the umbrella header: include this one.
 */
#ifndef DIRTYTRACK_H
#define DIRTYTRACK_H

#include <dirtytrack/log.h>
#include <dirtytrack/iommu.h>
#include <dirtytrack/track.h>
#include <dirtytrack/transport.h>
#include <dirtytrack/migrate.h>

#define DT_VERSION_MAJOR 0
#define DT_VERSION_MINOR 1
#define DT_VERSION_PATCH 0

#ifdef __cplusplus
extern "C" {
#endif

/* "0.1.0": the version of the library actually loaded. */
const char *dt_version(void);

#ifdef __cplusplus
}
#endif

#endif /* DIRTYTRACK_H */
