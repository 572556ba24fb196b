/* SPDX-License-Identifier: MIT */
/*
 * core/iova_tree.h - the interval tree of DMA mappings: disjoint closed intervals
 * [start, last] of IOVA in an AVL tree keyed by start.
 *
 * Writers (insert, remove, the *_locked lookups) are serialized by the owner's lock and are
 * O(log n). Readers may look up concurrently without any lock (iova_tree_find_lockless),
 * provided nodes are freed only after a grace period (sys/rcu.h): the lookup validates
 * itself against a sequence count bumped around every modification, retries when a writer
 * interfered, and bounds its walk so a rotation seen half-done can never loop it.
 */
#ifndef DT_CORE_IOVA_TREE_H
#define DT_CORE_IOVA_TREE_H

#include <stdatomic.h>
#include <stdint.h>

struct iova_node {
	_Atomic(struct iova_node *) left, right;
	uint64_t start, last; /* immutable while in the tree */
	int height;	      /* writer only */
};

struct iova_tree {
	_Atomic(struct iova_node *) root;
	_Atomic uint32_t seq; /* odd while a writer modifies the tree */
	uint64_t count;
};

void iova_tree_init(struct iova_tree *t);

/* The caller has checked that [n->start, n->last] overlaps nothing. */
void iova_tree_insert(struct iova_tree *t, struct iova_node *n);
void iova_tree_remove(struct iova_tree *t, struct iova_node *n);

/* Writer side: the node containing addr, or NULL. */
struct iova_node *iova_tree_find_locked(const struct iova_tree *t, uint64_t addr);
/* Writer side: the lowest node with last >= addr, or NULL. */
struct iova_node *iova_tree_ceil_locked(const struct iova_tree *t, uint64_t addr);
/* Writer side: the first node overlapping [start, last], or NULL. */
struct iova_node *iova_tree_first_overlap(const struct iova_tree *t, uint64_t start, uint64_t last);
/* Writer side: the next node after n in order, or NULL. */
struct iova_node *iova_tree_next_locked(const struct iova_tree *t, const struct iova_node *n);

/* Lock-free: the node containing addr, or NULL; caller in a read-side critical section. */
struct iova_node *iova_tree_find_lockless(const struct iova_tree *t, uint64_t addr);
/* Lock-free: the lowest node with last >= addr, or NULL. */
struct iova_node *iova_tree_ceil_lockless(const struct iova_tree *t, uint64_t addr);

#endif
