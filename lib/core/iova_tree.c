/* SPDX-License-Identifier: MIT */
/*
 * core/iova_tree.c - AVL interval tree of disjoint IOVA ranges with lock-free lookups.
 *
 * Invariants: in-order traversal gives strictly increasing, disjoint [start, last]; every
 * node's height is 1 + max(child heights) and children differ by at most 1, so the depth is
 * at most 1.44 log2(n + 2): 64 levels cover any possible number of nodes, and a lockless
 * walk longer than that has seen a rotation in progress and restarts.
 *
 * Writers publish child pointers with release stores and bump seq around each change;
 * lockless readers use acquire loads, so a node's start/last are visible before the node.
 */
#include "core/iova_tree.h"

#include <stdbool.h>
#include <stddef.h>

#define MAX_WALK 96

static inline struct iova_node *ld(_Atomic(struct iova_node *) const *p)
{
	return atomic_load_explicit((_Atomic(struct iova_node *) *)p, memory_order_acquire);
}

static inline void st(_Atomic(struct iova_node *) *p, struct iova_node *n)
{
	atomic_store_explicit(p, n, memory_order_release);
}

void iova_tree_init(struct iova_tree *t)
{
	atomic_init(&t->root, NULL);
	atomic_init(&t->seq, 0);
	t->count = 0;
}

static inline int height(const struct iova_node *n)
{
	return n ? n->height : 0;
}

static void fix_height(struct iova_node *n)
{
	int l = height(ld(&n->left)), r = height(ld(&n->right));

	n->height = 1 + (l > r ? l : r);
}

static struct iova_node *rotate_right(struct iova_node *n)
{
	struct iova_node *l = ld(&n->left);

	st(&n->left, ld(&l->right));
	st(&l->right, n);
	fix_height(n);
	fix_height(l);
	return l;
}

static struct iova_node *rotate_left(struct iova_node *n)
{
	struct iova_node *r = ld(&n->right);

	st(&n->right, ld(&r->left));
	st(&r->left, n);
	fix_height(n);
	fix_height(r);
	return r;
}

static struct iova_node *rebalance(struct iova_node *n)
{
	int bal;

	fix_height(n);
	bal = height(ld(&n->left)) - height(ld(&n->right));
	if (bal > 1) {
		struct iova_node *l = ld(&n->left);

		if (height(ld(&l->left)) < height(ld(&l->right)))
			st(&n->left, rotate_left(l));
		return rotate_right(n);
	}
	if (bal < -1) {
		struct iova_node *r = ld(&n->right);

		if (height(ld(&r->right)) < height(ld(&r->left)))
			st(&n->right, rotate_right(r));
		return rotate_left(n);
	}
	return n;
}

static struct iova_node *insert_at(struct iova_node *root, struct iova_node *n)
{
	if (!root)
		return n;
	if (n->start < root->start)
		st(&root->left, insert_at(ld(&root->left), n));
	else
		st(&root->right, insert_at(ld(&root->right), n));
	return rebalance(root);
}

static struct iova_node *remove_min(struct iova_node *root, struct iova_node **min)
{
	struct iova_node *l = ld(&root->left);

	if (!l) {
		*min = root;
		return ld(&root->right);
	}
	st(&root->left, remove_min(l, min));
	return rebalance(root);
}

static struct iova_node *remove_at(struct iova_node *root, struct iova_node *n)
{
	struct iova_node *min, *rest;

	if (!root)
		return NULL;
	if (n->start < root->start) {
		st(&root->left, remove_at(ld(&root->left), n));
		return rebalance(root);
	}
	if (n->start > root->start) {
		st(&root->right, remove_at(ld(&root->right), n));
		return rebalance(root);
	}
	if (!ld(&root->right))
		return ld(&root->left);
	rest = remove_min(ld(&root->right), &min);
	st(&min->right, rest);
	st(&min->left, ld(&root->left));
	return rebalance(min);
}

static void write_begin(struct iova_tree *t)
{
	uint32_t s = atomic_load_explicit(&t->seq, memory_order_relaxed);

	atomic_store_explicit(&t->seq, s + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

static void write_end(struct iova_tree *t)
{
	uint32_t s = atomic_load_explicit(&t->seq, memory_order_relaxed);

	atomic_store_explicit(&t->seq, s + 1, memory_order_release);
}

void iova_tree_insert(struct iova_tree *t, struct iova_node *n)
{
	atomic_init(&n->left, NULL);
	atomic_init(&n->right, NULL);
	n->height = 1;
	write_begin(t);
	st(&t->root, insert_at(ld(&t->root), n));
	write_end(t);
	t->count++;
}

void iova_tree_remove(struct iova_tree *t, struct iova_node *n)
{
	write_begin(t);
	st(&t->root, remove_at(ld(&t->root), n));
	write_end(t);
	t->count--;
}

struct iova_node *iova_tree_find_locked(const struct iova_tree *t, uint64_t addr)
{
	struct iova_node *n = ld(&t->root);

	while (n) {
		if (addr < n->start)
			n = ld(&n->left);
		else if (addr > n->last)
			n = ld(&n->right);
		else
			return n;
	}
	return NULL;
}

struct iova_node *iova_tree_ceil_locked(const struct iova_tree *t, uint64_t addr)
{
	struct iova_node *n = ld(&t->root), *best = NULL;

	while (n) {
		if (n->last >= addr) {
			best = n;
			if (n->start <= addr)
				return n;
			n = ld(&n->left);
		} else {
			n = ld(&n->right);
		}
	}
	return best;
}

struct iova_node *iova_tree_first_overlap(const struct iova_tree *t, uint64_t start, uint64_t last)
{
	struct iova_node *n = iova_tree_ceil_locked(t, start);

	return n && n->start <= last ? n : NULL;
}

struct iova_node *iova_tree_next_locked(const struct iova_tree *t, const struct iova_node *n)
{
	return n->last == UINT64_MAX ? NULL : iova_tree_ceil_locked(t, n->last + 1);
}

/*
 * The seqcount-validated walk behind both lockless lookups: descend towards addr, keeping
 * the lowest node seen whose last >= addr; stop at a node containing addr when exact.
 */
static struct iova_node *walk_lockless(const struct iova_tree *t, uint64_t addr, bool exact)
{
	_Atomic uint32_t *seqp = (_Atomic uint32_t *)&t->seq;

	for (;;) {
		uint32_t s = atomic_load_explicit(seqp, memory_order_acquire);
		struct iova_node *n, *best = NULL;
		int steps = 0;

		if (s & 1)
			continue;
		for (n = ld(&t->root); n && steps < MAX_WALK; steps++) {
			if (addr < n->start) {
				if (!exact)
					best = n;
				n = ld(&n->left);
			} else if (addr > n->last) {
				n = ld(&n->right);
			} else {
				best = n;
				break;
			}
		}
		atomic_thread_fence(memory_order_acquire);
		if (steps < MAX_WALK && atomic_load_explicit(seqp, memory_order_relaxed) == s)
			return best;
	}
}

struct iova_node *iova_tree_find_lockless(const struct iova_tree *t, uint64_t addr)
{
	return walk_lockless(t, addr, true);
}

struct iova_node *iova_tree_ceil_lockless(const struct iova_tree *t, uint64_t addr)
{
	return walk_lockless(t, addr, false);
}
