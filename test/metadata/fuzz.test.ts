/**
 * Fuzz: random and mutated requests at every RPC of the Metadata service of a running 3-server cluster.
 * Requests are encoded here (so wrong types, missing fields, huge strings and numbers reach the wire as far
 * as protobuf allows) and sent through a raw client with identity serializers, which also sends garbage and
 * bit-flipped frames. Every call must answer a result or a typed error code; the server keeps serving; the
 * leader's namespace keeps its invariants (nothing half-applied).
 */
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import t from 'tap';
import { checkNamespaceInvariants } from '../../src/fsm/invariants.ts';
import { MetadataClient } from '../../src/metadata/client.ts';
import { metadataMethods, metadataService } from '../../src/metadata/proto.ts';
import type { WireReply } from '../../src/metadata/proto.ts';
import { rawCall, startInProcessCluster } from './harness.ts';

const typedCodes = new Set([
  'ENOENT', 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENOTEMPTY', 'EINVAL', 'ENAMETOOLONG', 'EPRECONDITION', 'ELEASE',
  'ESTALE', 'ESESSION', 'EBADMSG', 'NOT_LEADER', 'UNAVAILABLE', 'TIMEOUT', 'ECONFCHANGE', 'ENOSPC',
]);

type Outcome = { kind: 'reply'; reply: WireReply } | { kind: 'status'; code: grpc.status; details: string };

class RawClient {
  private readonly client: grpc.Client;
  constructor(address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': 1024 * 1024,
    });
  }
  call(method: string, bytes: Buffer): Promise<Outcome> {
    const def = metadataService[method]!;
    return new Promise((resolve) => {
      this.client.makeUnaryRequest<Buffer, WireReply>(
        def.path,
        (b) => b,
        (b) => def.responseDeserialize(b) as WireReply,
        bytes,
        { deadline: Date.now() + 10_000 },
        (e, reply) => resolve(e !== null ? { kind: 'status', code: e.code, details: e.details } : { kind: 'reply', reply: reply ?? {} }),
      );
    });
  }
  close(): void {
    this.client.close();
  }
}

const pathArb = fc.oneof(
  { arbitrary: fc.constantFrom('/a', '/a/b', '/f', '/a/f', '/a/b/c', '/g', '/a/g/h'), weight: 6 },
  fc.constantFrom('/', '/a', '/a/b', '/f', '/a/f', '/a/b/c', '//', '/a/../b', '/./x', 'rel', '', '/a\0b', '/a/'),
  fc.string({ maxLength: 30 }).map((s) => `/${s}`),
  fc.string({ maxLength: 30 }),
  fc.integer({ min: 200, max: 6000 }).map((n) => `/${'x'.repeat(n)}`),
  fc.integer({ min: 1, max: 2100 }).map((n) => `/${'d/'.repeat(n)}x`),
);
const u64Arb = fc.oneof(
  fc.constantFrom(0, 1, 2, 3, -1, 2 ** 32, 2 ** 53, Number.MAX_SAFE_INTEGER),
  fc.constantFrom('0', '1', '18446744073709551615', '9007199254740993', '-5', 'abc', ''),
  fc.nat(),
  fc.integer(),
  fc.double(),
);
const anyValue = fc.oneof(
  u64Arb,
  fc.string({ maxLength: 20 }),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.array(fc.nat(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.nat(), { maxKeys: 3 }),
  fc.integer({ min: 1000, max: 200_000 }).map((n) => 'y'.repeat(n)),
);

const fieldsOf: Record<string, string[]> = {
  OpenSession: [],
  Mkdir: ['session', 'path', 'parents', 'mode', 'owner', 'replication', 'chunkSizeBytes', 'ifGeneration'],
  Create: ['session', 'path', 'exclusive', 'mode', 'owner', 'replication', 'chunkSizeBytes', 'leaseHolder', 'leaseDurationMs', 'firstChunk', 'ifGeneration'],
  CreateMany: ['session', 'dir', 'names', 'mode', 'owner', 'replication', 'chunkSizeBytes', 'ifGeneration'],
  Setattr: ['session', 'path', 'mode', 'mtimeMs', 'owner', 'replication', 'ifGeneration'],
  Rename: ['session', 'from', 'to', 'ifGeneration'],
  Unlink: ['session', 'path', 'ifGeneration'],
  Rmdir: ['session', 'path', 'ifGeneration'],
  DeleteRecursive: ['session', 'path', 'ifGeneration'],
  Stat: ['path', 'staleOk'],
  Readdir: ['path', 'cursor', 'limit', 'staleOk'],
  ClusterStatus: [],
  AddMember: ['memberId', 'address', 'raftAddress'],
  PromoteMember: ['memberId'],
  RemoveMember: ['memberId'],
  TransferLeadership: ['memberId'],
  AllocateChunk: ['session', 'path', 'holder', 'ifGeneration'],
  ChunkLocations: ['path', 'fromIndex', 'limit', 'staleOk'],
  AcquireLease: ['session', 'path', 'holder', 'durationMs', 'ifGeneration'],
  RenewLease: ['session', 'path', 'holder', 'durationMs', 'ifGeneration'],
  ReleaseLease: ['session', 'path', 'holder', 'ifGeneration'],
  CompleteFile: ['session', 'path', 'holder', 'chunkCount', 'lastChunk', 'ifGeneration'],
  BumpChunkVersion: ['session', 'handle', 'holder', 'version', 'survivors', 'addReplacements', 'ifGeneration'],
  SealChunk: ['session', 'handle', 'holder', 'version', 'lengthBytes', 'checksum', 'ifGeneration'],
  AbandonChunk: ['session', 'path', 'holder', 'handle', 'ifGeneration'],
  ReportBadReplica: ['handle', 'reportedChunkserverId', 'version'],
  RegisterChunkserver: ['chunkserverId', 'address', 'rack', 'capacityBytes', 'usedBytes'],
  Heartbeat: ['chunkserverId', 'capacityBytes', 'usedBytes'],
  ChunkReport: ['chunkserverId', 'full', 'chunks', 'removed'],
  ListChunkservers: ['after', 'limit', 'staleOk'],
  DecommissionChunkserver: ['chunkserverId'],
  ForgetChunkserver: ['chunkserverId'],
  Submit: ['items'],
};

/** Generator names that differ from the wire field they fill. */
const wireField: Record<string, string> = { memberId: 'id', chunkserverId: 'id', reportedChunkserverId: 'chunkserverId' };

void t.test('random and mutated requests at every RPC', async (t) => {
  // Chunkservers the fuzzer registers never heartbeat: a long timeout keeps the chunk manager from declaring
  // them dead (proposals) while the invariants are checked at the end (that check is not a snapshot read).
  const cluster = await startInProcessCluster(3, { chunkManagerLimits: { heartbeatTimeoutMs: 600_000, leaderGraceMs: 600_000 } });
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const address = cluster.peers.get(leader.id)!.client;
  const followerAddress = cluster.peers.get([...cluster.servers.keys()].find((id) => id !== leader.id)!)!.client;
  const client = await MetadataClient.connect([address]);
  t.teardown(() => client.close());
  await client.mkdir('/a/b', { parents: true });
  await client.create('/a/f');
  // Chunkservers and a file under a lease, so chunk RPCs also reach their success paths.
  for (const rack of ['r0', 'r1', 'r2']) await rawCall(address, 'RegisterChunkserver', { address: `10.0.0.${rack.at(1)}:7000`, rack, capacityBytes: 1e12 });
  await rawCall(address, 'Create', { session: { clientId: client.sessionId, seq: 900_000, ack: 0 }, path: '/f', leaseHolder: 'w', leaseDurationMs: 600_000 });
  // Chunks of /f (once the leader's chunk manager runs), so handles the fuzzer draws name real chunks.
  for (let i = 0; i < 3; i++) {
    for (let attempt = 0; attempt < 100; attempt++) {
      const r = await rawCall(address, 'AllocateChunk', { path: '/f', holder: 'w' });
      if (r.error?.code !== 'UNAVAILABLE') break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  const raw = new RawClient(address);
  const rawFollower = new RawClient(followerAddress);
  t.teardown(() => {
    raw.close();
    rawFollower.close();
  });
  const realSession = client.sessionId;
  let seq = 1_000_000;

  const sessionArb = fc.oneof(
    { arbitrary: fc.constant(0).map(() => ({ clientId: realSession, seq: ++seq, ack: 0 })), weight: 6 },
    fc.constant(undefined),
    fc.constant(null),
    fc.record({ clientId: fc.constant(realSession), seq: fc.constant(0), ack: fc.constant(0) }).map((s) => ({ ...s, seq: ++seq })),
    fc.record({ clientId: u64Arb, seq: u64Arb, ack: u64Arb }, { requiredKeys: [] }),
    fc.record({ clientId: fc.integer({ min: 100_000, max: 1_000_000_000 }), seq: fc.integer({ min: 1, max: 10 }), ack: fc.constant(0) }),
    anyValue,
  );
  const valueFor = (field: string): fc.Arbitrary<unknown> => {
    switch (field) {
      case 'session':
        return sessionArb;
      case 'path':
      case 'from':
      case 'to':
      case 'dir':
        return pathArb;
      case 'items':
        // Submit: namespace mutations (each with fuzzed fields), empty items, too many items.
        return fc.oneof(
          fc.array(
            fc.oneof(
              fc
                .tuple(
                  fc.constantFrom('mkdir', 'create', 'setattr', 'unlink', 'rmdir', 'rename'),
                  fc.record({ session: valueFor('session'), path: valueFor('path'), from: valueFor('from'), to: valueFor('to') }, { requiredKeys: [] }),
                )
                .map(([op, request]) => ({ [op]: request })),
              fc.constant({}),
            ),
            { maxLength: 6 },
          ),
          fc.integer({ min: 257, max: 300 }).map((n) => Array.from({ length: n }, (_, i) => ({ unlink: { path: `/n${i}` } }))),
          anyValue,
        );
      case 'names':
        return fc.oneof(
          fc.array(fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('.', '..', 'a/b', 'x\0y', 'n1', 'n2')), {
            maxLength: 8,
          }),
          fc.integer({ min: 1020, max: 1100 }).map((n) => Array.from({ length: n }, (_, i) => `m${i}`)),
          anyValue,
        );
      case 'parents':
      case 'exclusive':
      case 'firstChunk':
      case 'staleOk':
        return fc.oneof(fc.boolean(), anyValue);
      // Ids of no real member (the real ones could legitimately be removed); learners that never catch up.
      case 'memberId':
        return fc.oneof({ arbitrary: fc.constantFrom(0, 7, 99, '8', -1, 2 ** 53), weight: 4 }, anyValue);
      case 'address':
      case 'raftAddress':
        return fc.oneof(
          { arbitrary: fc.constantFrom('127.0.0.1:1', '127.0.0.1:2', 'nope', ':', '[::1]:70000', ''), weight: 4 },
          anyValue,
        );
      case 'chunkserverId':
      case 'reportedChunkserverId':
        return fc.oneof({ arbitrary: fc.constantFrom(0, 1, 2, 3, 50, '2', -1, 2 ** 53), weight: 4 }, anyValue);
      case 'full':
        return fc.oneof(fc.boolean(), anyValue);
      case 'chunks':
        return fc.oneof(
          fc.array(fc.record({ handle: fc.oneof(fc.nat({ max: 20 }), u64Arb), version: fc.oneof(fc.nat({ max: 3 }), u64Arb), lengthBytes: u64Arb }, { requiredKeys: [] }), { maxLength: 5 }),
          anyValue,
        );
      case 'handle':
        return fc.oneof({ arbitrary: fc.nat({ max: 12 }), weight: 4 }, u64Arb, anyValue);
      case 'version':
        return fc.oneof({ arbitrary: fc.nat({ max: 4 }), weight: 4 }, u64Arb, anyValue);
      case 'leaseHolder':
        return valueFor('holder');
      case 'leaseDurationMs':
      case 'durationMs':
        return fc.oneof({ arbitrary: fc.constantFrom(0, 1, 1_000, 600_000, 600_001), weight: 4 }, u64Arb, anyValue);
      case 'survivors':
        return fc.oneof(
          { arbitrary: fc.array(fc.oneof(fc.nat({ max: 5 }), u64Arb), { maxLength: 5 }), weight: 4 },
          fc.integer({ min: 17, max: 40 }).map((n) => Array.from({ length: n }, (_, i) => i + 1)),
          anyValue,
        );
      case 'addReplacements':
        return fc.oneof(fc.boolean(), anyValue);
      case 'chunkCount':
        return fc.oneof({ arbitrary: fc.nat({ max: 4 }), weight: 4 }, u64Arb, anyValue);
      case 'lastChunk':
        // A ChunkSeal message: real-looking handles and versions (the file /f has chunks), and junk.
        return fc.oneof(
          { arbitrary: fc.record({ handle: valueFor('handle'), version: valueFor('version'), lengthBytes: u64Arb, checksum: valueFor('checksum') }, { requiredKeys: [] }), weight: 4 },
          anyValue,
        );
      case 'checksum':
        return fc.oneof(fc.nat({ max: 0xffff_ffff }), u64Arb, anyValue);
      case 'removed':
        return fc.oneof(fc.array(fc.oneof(fc.nat({ max: 20 }), u64Arb), { maxLength: 5 }), anyValue);
      case 'holder':
      case 'rack':
        return fc.oneof(fc.constantFrom('w', 'r0', 'r1', ''), fc.string({ maxLength: 20 }), anyValue);
      case 'owner':
      case 'cursor':
        return fc.oneof(fc.string({ maxLength: 40 }), fc.integer({ min: 1000, max: 5000 }).map((n) => 'o'.repeat(n)), anyValue);
      default:
        return fc.oneof(u64Arb, anyValue);
    }
  };
  const requestArb = fc.constantFrom(...metadataMethods).chain((method) => {
    const fields = fieldsOf[method]!;
    const record: Record<string, fc.Arbitrary<unknown>> = {};
    for (const f of fields) record[wireField[f] ?? f] = valueFor(f);
    return fc.record({
      method: fc.constant(method),
      request: fc.record(record, { requiredKeys: [] }),
      extra: fc.dictionary(fc.string({ maxLength: 6 }), anyValue, { maxKeys: 2 }),
      // 0: as encoded; 1: bit flips; 2: truncated; 3: pure garbage
      mutation: fc.nat({ max: 3 }),
      flips: fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 6 }),
      garbage: fc.uint8Array({ maxLength: 300 }),
      follower: fc.boolean(),
    });
  });

  // A frame that is not protobuf at all gets a typed EINVAL, not a bare INTERNAL status.
  for (const method of metadataMethods) {
    const outcome = await raw.call(method, Buffer.from([0xff, 0xff, 0xff, 0xff]));
    t.equal(outcome.kind === 'reply' ? outcome.reply.error?.code : `status ${outcome.code}`, 'EINVAL', `${method}: garbage frame`);
  }

  let sent = 0;
  let unencodable = 0;
  const statuses = new Map<string, number>();
  const codes = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(requestArb, async ({ method, request, extra, mutation, flips, garbage, follower }) => {
      const def = metadataService[method]!;
      let bytes: Buffer;
      if (mutation === 3) {
        bytes = Buffer.from(garbage);
      } else {
        try {
          bytes = Buffer.from(def.requestSerialize({ ...extra, ...request }));
        } catch {
          unencodable++;
          return;
        }
        if (mutation === 1 && bytes.length > 0) {
          bytes = Buffer.from(bytes);
          for (const [i, x] of flips) {
            const j = i % bytes.length;
            bytes[j] = (bytes[j] ?? 0) ^ x;
          }
        } else if (mutation === 2 && bytes.length > 0) {
          bytes = bytes.subarray(0, flips[0]![0] % bytes.length);
        }
      }
      sent++;
      const outcome = await (follower ? rawFollower : raw).call(method, bytes);
      if (outcome.kind === 'status') {
        const name = grpc.status[outcome.code];
        statuses.set(name, (statuses.get(name) ?? 0) + 1);
        // Only the transport's own frame limit may refuse a request without a typed reply.
        if (outcome.code !== grpc.status.RESOURCE_EXHAUSTED) {
          throw new Error(`${method}: gRPC status ${name}: ${outcome.details}`);
        }
        return;
      }
      const error = outcome.reply.error;
      if (error !== undefined && error !== null) {
        codes.set(error.code, (codes.get(error.code) ?? 0) + 1);
        if (!typedCodes.has(error.code)) throw new Error(`${method}: untyped error code ${error.code}`);
        if (error.message === 'internal error') throw new Error(`${method}: internal error`);
        if (typeof error.message !== 'string' || error.message.length === 0) throw new Error(`${method}: no message`);
      }
    }),
    { numRuns: 1500, seed: Number(process.env['FUZZ_SEED'] ?? Date.now() % 1_000_000), verbose: 1 },
  );
  t.comment(`sent ${sent}, unencodable ${unencodable}; statuses ${JSON.stringify([...statuses])}; codes ${JSON.stringify([...codes])}`);
  t.ok(sent > 1000, 'most generated requests reached the server');

  // Still serving. A fresh session: fuzzed stamps may have named the first client's session and raised its
  // acknowledged sequence past the client's own (so its next command is refused with ESESSION, correctly).
  const after = await MetadataClient.connect([address]);
  t.teardown(() => after.close());
  await after.mkdir('/after-fuzz/x', { parents: true });
  const st = await after.stat('/after-fuzz/x');
  t.equal(st.type, 'dir');
  t.ok((await after.readdir('/')).some((e) => e.name === 'after-fuzz'));

  // Nothing half-applied: the leader's namespace satisfies every invariant, and all replicas converge.
  const current = await cluster.leader();
  t.same(await checkNamespaceInvariants(current.kv), [], 'namespace invariants hold on the leader');
  const commit = current.node.status().commit;
  // Fuzzed RemoveMember requests may name a real server (ids are random): only members converge.
  const conf = current.node.status().confState;
  const members = new Set([...conf.voters, ...conf.learners]);
  for (const s of cluster.servers.values()) {
    if (!members.has(s.id)) continue;
    await waitApplied(s.node, commit);
    t.same(await checkNamespaceInvariants(s.kv), [], `namespace invariants hold on server ${s.id}`);
  }
});

async function waitApplied(node: { status(): { applied: number } }, index: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (node.status().applied < index) {
    if (Date.now() > deadline) throw new Error('replica did not catch up');
    await new Promise((r) => setTimeout(r, 20));
  }
}
