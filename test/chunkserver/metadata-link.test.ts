/**
 * GrpcMetadataLink against a real metadata cluster: a registration without an id is stamped with a session,
 * and a retry after an answer that never came keeps the stamp, so the server answers the first registration
 * instead of allocating a second id (an orphan, before). And the largest chunk report the agent's limits allow
 * fits the metadata server's request limit, as the link encodes it.
 */
import t from 'tap';
import { MetadataClientConstructor } from '../../src/metadata/proto.ts';
import type { MetadataMethod, WireReply, WireRequest } from '../../src/metadata/proto.ts';
import { requestBytesMax } from '../../src/metadata/server.ts';
import { GrpcMetadataLink } from '../../src/chunkserver/metadata-link.ts';
import type { ChunkReportRequest, ReportedReplica } from '../../src/chunkserver/agent.ts';
import { checkAgentLimits, defaultAgentLimits, MetadataLinkError, reportedReplicaBytesMax, reportMessageBytesMax } from '../../src/chunkserver/agent.ts';
import { chunkSizeBytesMax } from '../../src/chunkserver/types.ts';
import { rawCall, startInProcessCluster } from '../metadata/harness.ts';
import { testClusterOptions } from './agent-harness.ts';

type Call = (method: MetadataMethod, request: WireRequest) => Promise<WireReply>;

void t.test('registration: a retry after a lost answer gets the same id; answered ones get new ids', async (t) => {
  const cluster = await startInProcessCluster(3, testClusterOptions);
  t.teardown(() => cluster.close());
  await cluster.leader();
  const link = new GrpcMetadataLink(cluster.addresses, { attemptTimeoutMs: 2_000 });
  t.teardown(() => link.close());
  // Every exchange goes through the link's own call; this one drops the answer of the next registration
  // after the server applied it, as a leader that stopped right after committing would.
  const inner = (link as unknown as { call: Call }).call.bind(link);
  const sent: WireRequest[] = [];
  let loseNext = false;
  (link as unknown as { call: Call }).call = async (method, request) => {
    if (method === 'RegisterChunkserver') sent.push(request);
    const reply = await inner(method, request);
    if (method === 'RegisterChunkserver' && loseNext) {
      loseNext = false;
      throw new MetadataLinkError('UNAVAILABLE', 'the answer was lost');
    }
    return reply;
  };
  const request = { id: 0, address: '10.0.0.9:7000', rack: 'r0', capacityBytes: 1e12, usedBytes: 0 };
  loseNext = true;
  await t.rejects(link.register(request), { code: 'UNAVAILABLE' }, 'the first attempt gets no answer');
  const { id } = await link.register(request);
  const stamps = sent.map((r) => r['session'] as { clientId: number; seq: number });
  t.same(stamps[1], stamps[0], 'the retry carries the same stamp');
  const at = cluster.peers.get((await cluster.leader()).id)!.client;
  const servers = ((await rawCall(at, 'ListChunkservers', {}))['chunkservers'] ?? []) as { id: string; address: string }[];
  t.same(servers.filter((s) => s.address === '10.0.0.9:7000').map((s) => Number(s.id)), [id], 'one id for the server, no orphan');
  // A registration that was answered: the next one (a new data dir at the same address) is a new server.
  const second = await link.register(request);
  t.not(second.id, id, 'an answered registration is not repeated: a new one gets a new id');
  t.equal((sent.at(-1)!['session'] as { seq: number }).seq, stamps[0]!.seq + 1, 'under the next seq');
  // A registration with an id is an update and carries no stamp.
  t.equal((await link.register({ ...request, id })).id, id);
  t.equal(sent.at(-1)!['session'], undefined);
});

void t.test('the largest report the agent allows, every field at its largest, fits the server\'s request limit', (t) => {
  // The bytes grpc-js sends for the link's ChunkReport call (the link passes the request as it is).
  const encode = (request: ChunkReportRequest): number => MetadataClientConstructor.service['ChunkReport']!.requestSerialize(request).length;
  const largest: ReportedReplica = { handle: Number.MAX_SAFE_INTEGER, version: Number.MAX_SAFE_INTEGER, lengthBytes: chunkSizeBytesMax, sealed: true, checksum: 0xffff_ffff };
  const report = (count: number): ChunkReportRequest => ({ id: Number.MAX_SAFE_INTEGER, full: true, fullMore: true, chunks: Array<ReportedReplica>(count).fill(largest), removed: [] });
  t.equal(encode(report(2)) - encode(report(1)), reportedReplicaBytesMax, 'reportedReplicaBytesMax is what one more replica costs');

  const allowed = (count: number): boolean => {
    try {
      checkAgentLimits({ ...defaultAgentLimits, reportChunksMax: count });
      return true;
    } catch {
      return false;
    }
  };
  let max = defaultAgentLimits.reportChunksMax;
  t.ok(allowed(max), `the default (${max}) is allowed`);
  while (allowed(max + 1)) max++;
  t.comment(`reportChunksMax allowed up to ${max}`);
  t.ok(encode(report(max)) <= requestBytesMax, `a full report of ${max} replicas is ${encode(report(max))} bytes, within ${requestBytesMax}`);
  const incremental: ChunkReportRequest = { id: Number.MAX_SAFE_INTEGER, full: false, chunks: Array<ReportedReplica>(max - 1).fill(largest), removed: [Number.MAX_SAFE_INTEGER] };
  t.ok(encode(incremental) <= requestBytesMax, 'so is an incremental report of as many changes');
  t.throws(() => checkAgentLimits({ ...defaultAgentLimits, reportChunksMax: max + 1 }), RangeError, 'one replica more is refused');
  t.equal(reportMessageBytesMax, requestBytesMax, 'the agent checks against the server\'s limit');
  t.end();
});
