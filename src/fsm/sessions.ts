/**
 * Client sessions: exactly-once application of retried commands (Raft dissertation §6.3).
 *
 * A client opens a session (`openSession`, which allocates its client id), then numbers its commands
 * 1, 2, 3, ... and stamps each with `ack`: every sequence <= ack has been answered, so its result may be
 * forgotten. Several commands may be in flight at once. For a command (clientId, seq):
 * - unknown client (never opened, or evicted) → ESESSION: the client must open a new session;
 * - seq <= the session's ack → ESESSION (the client said it has that answer; a late duplicate);
 * - a result is stored for seq → that result, unchanged, without applying the command again;
 * - otherwise the command is applied and its result (success or error) stored under seq.
 *
 * Bounds (see FsmLimits): at most `sessionResultsMax` unacknowledged results per session (one more command
 * is refused with ESESSION, not applied); at most `sessionsMax` sessions (opening one more evicts the least
 * recently used); a session unused for `sessionIdleMs` of stamped time is dropped, at most
 * `sessionExpiriesPerCommandMax` per command. A client whose session was dropped gets ESESSION, never a
 * second application of a command.
 *
 * The by-use index (keys.ts, table y) lags. A session's entry is at `indexedMs`, which moves to the
 * command's stamped time only when that is at least `sessionUseGranularityMs` (G) past it; `lastUsedMs` in
 * the record is always the last use. So lastUsedMs - G < indexedMs <= lastUsedMs (checked by invariants.ts),
 * and a busy session's command rewrites only its record, not also the index (a delete and a put per command
 * before). Consequences, all deterministic (stamped time only):
 * - idle expiry drops a session whose entry is older than sessionIdleMs + G, so it never drops one used
 *   within sessionIdleMs, and drops an idle one at most G late (between sessionIdleMs and
 *   sessionIdleMs + G after its last use);
 * - eviction takes the session with the oldest entry: least recently used to within G.
 *
 * One result lives in the session record. A result is stored in the record when its slot there is free
 * (`inlineSeq` 0), else under its own result key (table r). A client with one command in flight at a time
 * (each command acknowledging the one before) thus never writes a result key: the acknowledgement frees the
 * slot and the new result takes it, in the record the command rewrites anyway (before: a put of the new
 * result's key and a delete of the acknowledged one's per command). Lookups try the record first.
 */
import { assert } from '../raft/errors.ts';
import type { SessionStamp } from './commands.ts';
import type { FsResult } from './errors.ts';
import { failure } from './errors.ts';
import * as keys from './keys.ts';
import { Table } from './keys.ts';
import type { Session } from './records.ts';
import * as rec from './records.ts';
import type { Txn } from './txn.ts';
import { notCached } from './txn.ts';

export async function openSession(txn: Txn): Promise<{ clientId: number }> {
  if ((await txn.meta()).sessionCount >= txn.limits.sessionsMax) await evictLeastRecent(txn);
  const clientId = await txn.allocate('nextClientId');
  const session: Session = {
    clientId,
    ack: 0,
    lastUsedMs: txn.nowMs,
    pending: 0,
    indexedMs: txn.nowMs,
    inlineSeq: 0,
    inlineResult: undefined,
  };
  txn.hints.sessionUseFloorMs = Math.min(txn.hints.sessionUseFloorMs, session.indexedMs);
  txn.hints.resultsAtMost.set(clientId, 0); // a new session has no results
  putSession(txn, session);
  txn.view.putByKeyString(keys.sessionByUseKeyString(session.indexedMs, clientId), new Uint8Array(0));
  const m = await txn.meta();
  m.sessionCount += 1;
  txn.putMeta(m);
  return { clientId };
}

/** Runs `apply` at most once per (client, seq); see the module comment. */
export async function runInSession(
  txn: Txn,
  stamp: SessionStamp,
  apply: () => Promise<FsResult>,
): Promise<FsResult> {
  const known = txn.getNow(keys.sessionKeyString(stamp.clientId));
  const session =
    known === notCached
      ? await getSession(txn, stamp.clientId)
      : known === null
        ? undefined
        : txn.hints.sessions.decode(stamp.clientId, known);
  if (session === undefined)
    return failure('ESESSION', `no session ${stamp.clientId} (never opened, or expired)`);
  if (stamp.seq <= session.ack) return failure('ESESSION', `sequence ${stamp.seq} was acknowledged already`);
  // Planted bug (simulator self-test): the stored result is ignored, so a retry is applied again.
  const noDedup = txn.bugs.has('fsm-no-session-dedup');
  const stored =
    session.inlineSeq === stamp.seq
      ? session.inlineResult
      : txn.hints.resultKnownAbsent(stamp.clientId, stamp.seq)
        ? undefined
        : await readNowOrLater(txn, keys.resultKeyString(stamp.clientId, stamp.seq));
  const cached = noDedup ? undefined : stored;
  if (cached !== undefined) {
    touch(txn, session);
    return rec.decodeResult(cached);
  }
  if (stamp.ack > session.ack) await forgetAcknowledged(txn, session, stamp.ack);
  // No result stored: learnt here for a session the hints did not know (opened before they were reset).
  if (session.pending === 0) txn.hints.resultsAtMost.set(stamp.clientId, 0);
  if (session.pending >= txn.limits.sessionResultsMax) {
    touch(txn, session);
    return failure('ESESSION', `${session.pending} unacknowledged commands; acknowledge some first`);
  }
  const result = await apply();
  const bytes = rec.encodeResult(result);
  // In the record when that is where it was (a planted bug's re-application) or the slot is free, unless the
  // result was stored under its key (the same planted bug).
  if (session.inlineSeq === stamp.seq || (stored === undefined && session.inlineSeq === 0)) {
    session.inlineSeq = stamp.seq;
    session.inlineResult = bytes;
  } else {
    txn.view.putByKeyString(keys.resultKeyString(stamp.clientId, stamp.seq), bytes);
  }
  const atMost = txn.hints.resultsAtMost.get(stamp.clientId);
  if (atMost !== undefined && stamp.seq > atMost) txn.hints.resultsAtMost.set(stamp.clientId, stamp.seq);
  if (stored === undefined) session.pending += 1;
  touch(txn, session);
  return result;
}

/**
 * Drops sessions idle for longer than sessionIdleMs (see the module comment: entries older than
 * sessionIdleMs + sessionUseGranularityMs), oldest entry first, a bounded number per command. The scan of
 * the by-use index runs only when the cutoff passes the in-memory floor of every session's entry
 * (ApplyHints); it then also reads the oldest entry that stays, which raises the floor.
 */
export async function expireIdleSessions(txn: Txn): Promise<void> {
  if (!sessionsMayExpire(txn)) return;
  const cutoffMs = expiryCutoffMs(txn);
  if ((await txn.meta()).sessionCount === 0) return;
  const max = txn.limits.sessionExpiriesPerCommandMax;
  const oldest = await txn.view.scan({ ...keys.prefixRange(Table.sessionByUse), limit: max + 1 });
  let evicted = 0;
  for (const { key } of oldest) {
    const indexedMs = keys.readU64(key, 1);
    if (indexedMs >= cutoffMs) {
      // Every entry left is at or after this one (entries only ever move forward).
      txn.hints.sessionUseFloorMs = indexedMs;
      return;
    }
    if (evicted === max) return; // more idle sessions: later commands drop them
    await evict(txn, keys.readU64(key, 1 + keys.U64_BYTES));
    evicted += 1;
  }
  if (oldest.length <= max) txn.hints.sessionUseFloorMs = Infinity; // none left
}

/** Whether expireIdleSessions may drop a session now: false while the cutoff is at or below every session's entry. */
export function sessionsMayExpire(txn: Txn): boolean {
  const cutoffMs = expiryCutoffMs(txn);
  return cutoffMs > 0 && cutoffMs > txn.hints.sessionUseFloorMs;
}

/**
 * Sessions whose by-use entry is below this are idle for longer than sessionIdleMs: their last use is below
 * indexedMs + sessionUseGranularityMs <= now - sessionIdleMs.
 */
function expiryCutoffMs(txn: Txn): number {
  return txn.nowMs - txn.limits.sessionIdleMs - txn.limits.sessionUseGranularityMs + 1;
}

async function evictLeastRecent(txn: Txn): Promise<void> {
  const [oldest] = await txn.view.scan({ ...keys.prefixRange(Table.sessionByUse), limit: 1 });
  assert(oldest !== undefined, 'session count > 0 but the by-use index is empty');
  await evict(txn, keys.readU64(oldest.key, 1 + keys.U64_BYTES));
}

async function evict(txn: Txn, clientId: number): Promise<void> {
  const session = await getSession(txn, clientId);
  assert(session !== undefined, `by-use index names a missing session ${clientId}`);
  const keyed = keyedResults(session);
  const results = await txn.view.scan({ ...keys.prefixRange(Table.result, clientId), limit: keyed + 1 });
  assert(results.length === keyed, `session ${clientId} keeps ${results.length} result keys, not ${keyed}`);
  for (const { key } of results) txn.view.delete(key);
  txn.hints.resultsAtMost.delete(clientId);
  txn.view.deleteByKeyString(keys.sessionKeyString(clientId));
  txn.view.deleteByKeyString(keys.sessionByUseKeyString(session.indexedMs, clientId));
  const m = await txn.meta();
  m.sessionCount -= 1;
  txn.putMeta(m);
}

/**
 * Raises the session's ack and deletes the results it covers: those of sequences in (session.ack, ack], as
 * results at or below the old ack were deleted when it was raised. The record's own result is dropped from
 * it; result keys of a short range are read key by key (store lookups, cached), of a long one with one scan,
 * and not at all when the record held every pending result.
 */
async function forgetAcknowledged(txn: Txn, session: Session, ack: number): Promise<void> {
  let keyed = keyedResults(session);
  const inlineSeq = session.inlineSeq;
  if (inlineSeq !== 0 && inlineSeq <= ack) {
    session.inlineSeq = 0;
    session.inlineResult = undefined;
    session.pending -= 1;
  }
  if (keyed > 0 && ack - session.ack <= txn.limits.sessionResultsMax) {
    for (let seq = session.ack + 1; seq <= ack && keyed > 0; seq++) {
      if (seq === inlineSeq) continue; // it had no key
      const key = keys.resultKeyString(session.clientId, seq);
      const known = txn.getNow(key);
      if (known === notCached ? (await txn.view.getByKeyString(key)) === undefined : known === null) continue;
      txn.view.deleteByKeyString(key);
      keyed -= 1;
      session.pending -= 1;
    }
  } else if (keyed > 0) {
    const covered = await txn.view.scan({
      gte: keys.resultKey(session.clientId, session.ack + 1),
      lt: keys.resultKey(session.clientId, ack + 1),
      limit: keyed + 1,
    });
    assert(covered.length <= keyed, `session ${session.clientId} result count mismatch`);
    for (const { key } of covered) txn.view.delete(key);
    session.pending -= covered.length;
  }
  session.ack = ack;
}

/** How many of the session's pending results are stored under result keys (not in its record). */
function keyedResults(session: Session): number {
  return session.pending - (session.inlineSeq === 0 ? 0 : 1);
}

/** view.get(key), without a promise when the value is known without I/O (Txn.getNow). */
function readNowOrLater(txn: Txn, key: string): Uint8Array | undefined | Promise<Uint8Array | undefined> {
  const known = txn.getNow(key);
  if (known === notCached) return txn.view.getByKeyString(key);
  return known ?? undefined;
}

async function getSession(txn: Txn, clientId: number): Promise<Session | undefined> {
  const bytes = await txn.view.getByKeyString(keys.sessionKeyString(clientId));
  return bytes === undefined ? undefined : txn.hints.sessions.decode(clientId, bytes);
}

function putSession(txn: Txn, s: Session): void {
  const bytes = rec.encodeSession(s);
  txn.view.putByKeyString(keys.sessionKeyString(s.clientId), bytes);
  txn.hints.sessions.remember(s, bytes);
}

/**
 * Marks the session used now and stores it; its by-use index entry moves only when now is at least
 * sessionUseGranularityMs past the entry (see the module comment).
 */
function touch(txn: Txn, s: Session): void {
  s.lastUsedMs = txn.nowMs;
  // Planted bug (simulator self-test): the entry never moves, so it lags the last use without bound.
  if (txn.nowMs - s.indexedMs >= txn.limits.sessionUseGranularityMs && !txn.bugs.has('fsm-session-index-frozen')) {
    txn.view.deleteByKeyString(keys.sessionByUseKeyString(s.indexedMs, s.clientId));
    s.indexedMs = txn.nowMs;
    txn.view.putByKeyString(keys.sessionByUseKeyString(s.indexedMs, s.clientId), new Uint8Array(0));
  }
  putSession(txn, s);
}
