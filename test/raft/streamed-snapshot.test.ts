/**
 * The core's part in streamed snapshots (config.snapshotStreaming): the leader only marks a follower as
 * needing a snapshot (the driver streams it), a follower hands chunks of a snapshot it needs to the driver
 * and refuses ones at or below its commit, and installStreamedSnapshot() takes the metadata of a state the
 * state machine already installed — replacing the log, or keeping it when it already holds that entry.
 */
import t from 'tap';
import { snapshotStreamContext } from '../../src/raft/snapshot-stream.ts';
import type { Message, SnapshotMetadata } from '../../src/raft/types.ts';
import { drainReady, entriesWithTerms, msg, Network, newRaftWithLog, putNode, texts } from './harness.ts';

function streamedChunk(from: number, to: number, term: number, metadata: SnapshotMetadata, offset = 0): Message {
  return msg({
    type: 'snap', from, to, term, index: 1, context: snapshotStreamContext,
    snapshot: { metadata, offset, totalBytes: 0, data: new Uint8Array([1, 2, 3]) },
  });
}

/** Leader 1 with a compacted log, follower 3 cut off behind it. */
function laggingFollower(): { net: Network; meta: SnapshotMetadata } {
  const net = new Network([1, 2, 3], { snapshotStreaming: true });
  net.campaign(1);
  net.isolate(3);
  for (let i = 0; i < 10; i++) net.propose(1, `v${i}`);
  const leader = net.node(1);
  const meta = leader.snapshotMetadataAtApplied();
  const snap = leader.createSnapshot(new Uint8Array(0));
  t.same(snap.metadata, meta, 'the metadata at the applied index is what a local snapshot records');
  leader.compact(snap.metadata.index);
  return { net, meta };
}

void t.test('leader: a follower behind the compacted log is marked for a streamed snapshot; the core sends no chunk', (t) => {
  const { net, meta } = laggingFollower();
  const leader = net.node(1);
  t.equal(meta.index, 12);
  net.recover();
  const mark = net.delivered.length;
  net.tick(1);
  net.stabilize();
  t.same(leader.takeSnapshotRequests(), [3], 'the driver is asked to stream to 3');
  t.same(leader.takeSnapshotRequests(), [], 'once');
  t.notOk(net.delivered.slice(mark).some((m) => m.type === 'snap'), 'no snap message from the core');
  t.equal(leader.tracker.progress.get(3)?.state, 'snapshot');
  // A failed transfer: probe again after the next heartbeat response, which asks for a new stream.
  leader.reportSnapshotFailure(3);
  t.equal(leader.tracker.progress.get(3)?.state, 'probe');
  net.tick(1);
  net.stabilize();
  t.same(leader.takeSnapshotRequests(), [3], 'retried after a heartbeat round');
  t.end();
});

void t.test('follower: chunks of a needed snapshot go to the driver; stale, old-term and unneeded ones do not', (t) => {
  const { net, meta } = laggingFollower();
  const f = net.node(3);
  const term = net.node(1).term;
  f.step(streamedChunk(1, 3, term, meta));
  const taken = f.takeStreamedChunks();
  t.equal(taken.length, 1, 'a chunk of a snapshot above our commit is handed over');
  t.equal(f.lead, 1, 'and the sender is our leader');
  t.same(drainReady(f).messages, [], 'nothing answered by the core: the driver acknowledges');

  f.step(streamedChunk(1, 3, term - 1, meta));
  t.same(f.takeStreamedChunks(), [], 'a chunk from an older term is dropped');

  const old: SnapshotMetadata = { ...meta, index: f.log.committed, term: 1 };
  f.step(streamedChunk(1, 3, term, old));
  t.same(f.takeStreamedChunks(), [], 'a snapshot at or below our commit is not taken');
  const replies = drainReady(f).messages;
  t.same(replies.map((m) => [m.type, m.index]), [['appResp', f.log.committed]], 'the leader is told our commit instead');
  t.ok(f.acceptsSnapshot(meta));
  t.notOk(f.acceptsSnapshot(old));
  t.end();
});

void t.test('install: the log is replaced by the metadata, persisted with empty data, and the follower rejoins', (t) => {
  const { net, meta } = laggingFollower();
  const f = net.node(3);
  net.recover();
  net.tick(1);
  net.stabilize();
  t.same(net.node(1).takeSnapshotRequests(), [3]);
  // The driver streamed the state; the state machine installed it; the core takes the metadata.
  f.installStreamedSnapshot(meta, 1);
  const rd = f.ready();
  t.same(rd.snapshot?.metadata, meta, 'the Ready persists the snapshot metadata');
  t.equal(rd.snapshot?.data.byteLength, 0, 'with no data: the state lives in the state machine');
  t.same(rd.committedEntries, [], 'nothing below the snapshot is applied again');
  t.same(rd.messagesAfterPersist.map((m) => [m.type, m.index]), [['appResp', 12]], 'acknowledged only after the persist');
  f.advance();
  t.equal(f.log.applied, 12);
  net.node(1).step(rd.messagesAfterPersist[0]!);
  net.stabilize();
  t.equal(net.node(1).tracker.progress.get(3)?.state, 'replicate', 'the leader replicates to it again');
  net.propose(1, 'after');
  t.same(texts(net.applied.get(3)!), ['after'], 'and it applies what follows');
  t.end();
});

void t.test('install racing a newer leader: a log that holds the entry is kept; commit and applied move up', (t) => {
  const net = new Network([1, 2]);
  // Follower 3 holds entries 2..8 (term 1), knows only commit 1, applied 1.
  const f = newRaftWithLog(3, [1, 2, 3], entriesWithTerms([1, 1, 1, 1, 1, 1, 1]), { commit: 1 }, { snapshotStreaming: true });
  putNode(net, f);
  const meta: SnapshotMetadata = { index: 5, term: 1, confState: { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } };
  t.notOk(f.acceptsSnapshot(meta), 'not needed: the log holds the entry');
  // The state machine was switched to the state at 5 before the matching entries arrived: the core adopts it.
  f.installStreamedSnapshot(meta, 1);
  t.equal(f.log.committed, 5);
  t.equal(f.log.applied, 5);
  t.equal(f.log.lastIndex(), 8, 'the entries after it (maybe acknowledged) are kept');
  const rd = f.ready();
  t.equal(rd.snapshot, null, 'no log replacement');
  t.same(rd.committedEntries, [], 'nothing up to 5 is applied again');
  t.same(rd.messagesAfterPersist.map((m) => [m.type, m.index]), [['appResp', 5]]);
  f.advance();
  t.end();
});

void t.test('streaming off: the byte-array path is unchanged (no requests, no streamed chunks)', (t) => {
  const net = new Network([1, 2, 3], { snapshotChunkBytes: 16 });
  net.campaign(1);
  net.isolate(3);
  for (let i = 0; i < 5; i++) net.propose(1, `v${i}`);
  const leader = net.node(1);
  leader.compact(leader.createSnapshot(new Uint8Array(40)).metadata.index);
  net.recover();
  net.tick(1);
  net.stabilize();
  t.same(leader.takeSnapshotRequests(), []);
  t.same(net.node(3).takeStreamedChunks(), []);
  t.equal(net.node(3).log.snapshot?.data.byteLength, 40, 'sent in the core, as before');
  t.end();
});
