/**
 * Reclamation of deleted inodes, a bounded number of keys per command.
 *
 * Deleting a subtree or a file with many chunks must not be one unbounded write, so deletion detaches the
 * inode (one directory entry) and queues it in the garbage table. After every command the state machine
 * reclaims up to `reclaimKeysPerCommandMax` keys, oldest queue entry first:
 * - a directory: each of its entries is removed and the child queued; when none is left, the inode goes;
 * - a file: each chunk list entry and its placement record are removed; then the lease and the inode go.
 *
 * Invariant: every queued inode is unreachable from the root, and the queued subtrees are disjoint, so the
 * namespace is unaffected. The work depends only on the sequence of commands (never on batch boundaries),
 * so every replica holds exactly the same keys after the same log index.
 */
import { assert } from '../raft/errors.ts';
import * as keys from './keys.ts';
import { Table } from './keys.ts';
import type { Txn } from './txn.ts';

export async function reclaim(txn: Txn, budget: number): Promise<void> {
  if ((await txn.meta()).garbageCount === 0) return;
  // One scan of the queue's head per command (entries queued now are reached by later commands).
  const heads = await txn.view.scan({ ...keys.prefixRange(Table.garbage), limit: budget });
  assert(heads.length > 0, 'garbage count > 0 but the queue is empty');
  let left = budget;
  for (const head of heads) {
    if (left <= 0) return;
    const id = keys.readU64(head.value, 0);
    const node = await txn.mustInode(id);
    const table = node.type === 'dir' ? Table.dirent : Table.chunkList;
    const limit = left;
    const items = await txn.view.scan({ ...keys.prefixRange(table, id), limit });
    for (const item of items) {
      txn.view.delete(item.key);
      if (node.type === 'dir') await enqueue(txn, keys.readDirent(item.value).id);
      else txn.view.delete(keys.placementKey(keys.readU64(item.value, 0)));
    }
    left -= items.length;
    if (items.length === limit) return; // budget spent; more may remain
    txn.deleteInode(id);
    txn.deleteLease(id);
    txn.view.delete(head.key);
    const m = await txn.meta();
    m.garbageCount -= 1;
    txn.putMeta(m);
    left -= 1;
  }
}

/** Appends an inode to the garbage queue. */
export async function enqueue(txn: Txn, id: number): Promise<void> {
  const m = await txn.meta();
  txn.view.put(keys.garbageKey(m.garbageNext), keys.u64Bytes(id));
  m.garbageNext += 1;
  m.garbageCount += 1;
  txn.putMeta(m);
}
