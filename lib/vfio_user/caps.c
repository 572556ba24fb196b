/* SPDX-License-Identifier: MIT */
/*
 * vfio_user/caps.c - the VERSION payload: major, minor and the JSON capabilities object
 * (max_msg_fds, max_data_xfer_size, pgsizes, max_dma_maps, migration {pgsize,
 * max_bitmap_size}, twin_socket, write_multiple), built and parsed with json-c.
 *
 * Parsing starts from the spec's defaults and overrides what is present; a value of the
 * wrong type or outside sane bounds fails the whole parse (-EINVAL, one log line naming the
 * member), so that a peer's limit is never silently clamped into something it did not say.
 * Unknown members are ignored, as the spec's "subset" rule lets newer peers add some.
 */
#include "vfio_user/msg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/log.h"

void vfu_caps_default(struct vfu_caps *caps)
{
	*caps = (struct vfu_caps){
		.max_msg_fds = VFU_DEFAULT_MAX_MSG_FDS,
		.max_data_xfer_size = VFU_DEFAULT_MAX_DATA_XFER_SIZE,
		.pgsizes = VFU_DEFAULT_PGSIZES,
		.max_dma_maps = VFU_DEFAULT_MAX_DMA_MAPS,
	};
}

/* A non-negative integer member (absent: 0 and *present = false). */
static int get_u64(json_object *obj, const char *name, uint64_t max, uint64_t *out, bool *present)
{
	json_object *v;

	*present = json_object_object_get_ex(obj, name, &v);
	if (!*present)
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return log_fail(-EINVAL, "vfio-user caps: %s is not an integer", name);
	if (json_object_get_int64(v) < 0)
		return log_fail(-EINVAL, "vfio-user caps: %s is negative", name);
	*out = json_object_get_uint64(v);
	if (*out > max)
		return log_fail(-EINVAL, "vfio-user caps: %s = %llu above %llu", name,
				(unsigned long long)*out, (unsigned long long)max);
	return 0;
}

static int get_bool(json_object *obj, const char *name, bool *out)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, name, &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return log_fail(-EINVAL, "vfio-user caps: %s is not a boolean", name);
	*out = json_object_get_boolean(v);
	return 0;
}

static bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static int parse_migration(json_object *mig, struct vfu_caps *caps)
{
	bool have_pg, have_max;
	int r;

	if (!json_object_is_type(mig, json_type_object))
		return log_fail(-EINVAL, "vfio-user caps: migration is not an object");
	r = get_u64(mig, "pgsize", UINT64_MAX, &caps->mig_pgsize, &have_pg);
	if (!r)
		r = get_u64(mig, "max_bitmap_size", VFU_CAPS_MAX_BITMAP_SIZE,
			    &caps->mig_max_bitmap_size, &have_max);
	if (r)
		return r;
	if (!have_pg || !have_max)
		return log_fail(-EINVAL, "vfio-user caps: migration without %s",
				have_pg ? "max_bitmap_size" : "pgsize");
	if (!is_pow2(caps->mig_pgsize) || caps->mig_pgsize < 512)
		return log_fail(-EINVAL, "vfio-user caps: migration.pgsize %llu",
				(unsigned long long)caps->mig_pgsize);
	if (!caps->mig_max_bitmap_size)
		return log_fail(-EINVAL, "vfio-user caps: migration.max_bitmap_size 0");
	caps->migration = true;
	return 0;
}

static int parse_caps_object(json_object *c, struct vfu_caps *caps)
{
	uint64_t v;
	bool have;
	json_object *sub;
	int r;

	if (!json_object_is_type(c, json_type_object))
		return log_fail(-EINVAL, "vfio-user caps: capabilities is not an object");
	r = get_u64(c, "max_msg_fds", VFU_CAPS_MAX_FDS, &v, &have);
	if (r)
		return r;
	if (have)
		caps->max_msg_fds = (uint32_t)v;
	r = get_u64(c, "max_data_xfer_size", VFU_CAPS_MAX_XFER, &v, &have);
	if (r)
		return r;
	if (have) {
		if (v < VFU_CAPS_MIN_XFER)
			return log_fail(-EINVAL, "vfio-user caps: max_data_xfer_size %llu below %u",
					(unsigned long long)v, VFU_CAPS_MIN_XFER);
		caps->max_data_xfer_size = v;
	}
	r = get_u64(c, "pgsizes", UINT64_MAX, &v, &have);
	if (r)
		return r;
	if (have) {
		if (!v || (v & 4095))
			return log_fail(-EINVAL, "vfio-user caps: pgsizes 0x%llx",
					(unsigned long long)v);
		caps->pgsizes = v;
	}
	r = get_u64(c, "max_dma_maps", UINT32_MAX, &v, &have);
	if (r)
		return r;
	if (have) {
		if (!v)
			return log_fail(-EINVAL, "vfio-user caps: max_dma_maps 0");
		caps->max_dma_maps = (uint32_t)v;
	}
	if (json_object_object_get_ex(c, "migration", &sub)) {
		r = parse_migration(sub, caps);
		if (r)
			return r;
	}
	if (json_object_object_get_ex(c, "twin_socket", &sub)) {
		if (!json_object_is_type(sub, json_type_object))
			return log_fail(-EINVAL, "vfio-user caps: twin_socket is not an object");
		r = get_bool(sub, "supported", &caps->twin_socket);
		if (r)
			return r;
	}
	return get_bool(c, "write_multiple", &caps->write_multiple);
}

int vfu_caps_parse(const char *json, size_t len, struct vfu_caps *caps)
{
	json_tokener *tok;
	json_object *root, *c;
	size_t n;
	int r = 0;

	vfu_caps_default(caps);
	if (!json)
		return log_fail(-EINVAL, "vfio-user caps: NULL");
	n = strnlen(json, len);
	if (n > (size_t)INT32_MAX)
		return log_fail(-EINVAL, "vfio-user caps: %zu bytes of JSON", n);
	tok = json_tokener_new();
	if (!tok)
		return log_fail(-ENOMEM, "vfio-user caps: out of memory");
	root = json_tokener_parse_ex(tok, json, (int)n);
	if (!root || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != n) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		r = log_fail(-EINVAL, "vfio-user caps: bad JSON (%s)",
			     e == json_tokener_success	  ? "trailing bytes"
			     : e == json_tokener_continue ? "incomplete"
							  : json_tokener_error_desc(e));
		goto out;
	}
	if (!json_object_is_type(root, json_type_object)) {
		r = log_fail(-EINVAL, "vfio-user caps: version data is not a JSON object");
		goto out;
	}
	if (json_object_object_get_ex(root, "capabilities", &c))
		r = parse_caps_object(c, caps);
out:
	json_object_put(root);
	json_tokener_free(tok);
	if (r)
		vfu_caps_default(caps);
	return r;
}

char *vfu_caps_format(const struct vfu_caps *caps, size_t *len)
{
	json_object *root = json_object_new_object();
	json_object *c = json_object_new_object();
	const char *s;
	char *out = NULL;

	if (!root || !c)
		goto out;
	json_object_object_add(root, "capabilities", c);
	json_object_object_add(c, "max_msg_fds", json_object_new_int64(caps->max_msg_fds));
	json_object_object_add(c, "max_data_xfer_size",
			       json_object_new_uint64(caps->max_data_xfer_size));
	json_object_object_add(c, "pgsizes", json_object_new_uint64(caps->pgsizes));
	json_object_object_add(c, "max_dma_maps", json_object_new_int64(caps->max_dma_maps));
	if (caps->migration) {
		json_object *m = json_object_new_object();

		if (!m)
			goto out;
		json_object_object_add(m, "pgsize", json_object_new_uint64(caps->mig_pgsize));
		json_object_object_add(m, "max_bitmap_size",
				       json_object_new_uint64(caps->mig_max_bitmap_size));
		json_object_object_add(c, "migration", m);
	}
	if (caps->twin_socket) {
		json_object *t = json_object_new_object();

		if (!t)
			goto out;
		json_object_object_add(t, "supported", json_object_new_boolean(1));
		json_object_object_add(c, "twin_socket", t);
	}
	if (caps->write_multiple)
		json_object_object_add(c, "write_multiple", json_object_new_boolean(1));
	s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
	if (s) {
		out = strdup(s);
		if (out && len)
			*len = strlen(out) + 1;
	}
out:
	if (root)
		json_object_put(root);
	else if (c)
		json_object_put(c);
	if (!out)
		log_err("vfio-user caps: out of memory");
	return out;
}

int vfu_version_parse(const void *payload, size_t len, uint16_t *major, uint16_t *minor,
		      struct vfu_caps *caps)
{
	struct vfu_version v;

	vfu_caps_default(caps);
	if (!payload || len < sizeof(v))
		return log_fail(-EINVAL, "vfio-user VERSION: payload of %zu bytes", len);
	memcpy(&v, payload, sizeof(v));
	*major = v.major;
	*minor = v.minor;
	if (len == sizeof(v))
		return 0;
	/* An empty string is the same as no JSON. */
	if (((const char *)payload)[sizeof(v)] == '\0')
		return 0;
	return vfu_caps_parse((const char *)payload + sizeof(v), len - sizeof(v), caps);
}

void *vfu_version_build(uint16_t major, uint16_t minor, const struct vfu_caps *caps, size_t *len)
{
	struct vfu_version v = {.major = major, .minor = minor};
	size_t jlen = 0;
	char *json = vfu_caps_format(caps, &jlen);
	uint8_t *out;

	if (!json)
		return NULL;
	out = malloc(sizeof(v) + jlen);
	if (out) {
		memcpy(out, &v, sizeof(v));
		memcpy(out + sizeof(v), json, jlen);
		*len = sizeof(v) + jlen;
	} else {
		log_err("vfio-user VERSION: out of memory");
	}
	free(json);
	return out;
}
