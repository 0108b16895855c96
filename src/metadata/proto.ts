/**
 * The Metadata service of src/rpc/metadata.proto, loaded at run time with @grpc/proto-loader (the .proto is
 * the single source of truth). uint64 fields arrive as decimal strings (`longs: String`) and are accepted as
 * numbers or strings; field names are camelCase on the JavaScript side.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import type { ServiceClientConstructor, ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

export const metadataProtoPath = fileURLToPath(new URL('../rpc/metadata.proto', import.meta.url));

const packageDefinition = loadSync(metadataProtoPath, {
  longs: String,
  defaults: false,
  oneofs: false,
  keepCase: false,
});

const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as {
  rfs: { metadata: { v1: { Metadata: ServiceClientConstructor } } };
};

export const MetadataClientConstructor: ServiceClientConstructor = loaded.rfs.metadata.v1.Metadata;
export const metadataService: ServiceDefinition = MetadataClientConstructor.service;

/** The unary methods of the service, in the casing grpc-js uses for handlers and client stubs. */
export const metadataMethods = [
  'OpenSession',
  'Mkdir',
  'Create',
  'CreateMany',
  'Setattr',
  'Rename',
  'Unlink',
  'Rmdir',
  'DeleteRecursive',
  'Stat',
  'Readdir',
  'ClusterStatus',
  'AddMember',
  'PromoteMember',
  'RemoveMember',
  'TransferLeadership',
  'AllocateChunk',
  'ChunkLocations',
  'AcquireLease',
  'RenewLease',
  'ReleaseLease',
  'CompleteFile',
  'BumpChunkVersion',
  'SealChunk',
  'AbandonChunk',
  'ReportBadReplica',
  'RegisterChunkserver',
  'Heartbeat',
  'ChunkReport',
  'ListChunkservers',
  'DecommissionChunkserver',
  'ForgetChunkserver',
  'Submit',
] as const;
export type MetadataMethod = (typeof metadataMethods)[number];

/** Submit's item fields (metadata.proto SubmitItem) and the rpc whose request each carries. */
export const submitItemMethods = {
  mkdir: 'Mkdir',
  create: 'Create',
  setattr: 'Setattr',
  rename: 'Rename',
  unlink: 'Unlink',
  rmdir: 'Rmdir',
} as const satisfies Record<string, MetadataMethod>;
export type SubmitItemField = keyof typeof submitItemMethods;
/** The methods a client may send inside Submit. */
export type SubmittableMethod = (typeof submitItemMethods)[SubmitItemField];
/** Items per Submit call, at most (the server answers more with EINVAL, proposing none). */
export const submitItemsMax = 256;

/** Error codes beyond the state machine's: the reply's `error.code`. */
export const serviceErrorCodes = ['NOT_LEADER', 'UNAVAILABLE', 'TIMEOUT', 'EINVAL', 'ECONFCHANGE', 'ENOSPC'] as const;

export interface WireError {
  readonly code: string;
  readonly message: string;
  readonly leaderAddress?: string;
}

/** Every reply: the result fields, or `error`. */
export interface WireReply {
  readonly error?: WireError | null;
  readonly [field: string]: unknown;
}

export type WireRequest = Readonly<Record<string, unknown>>;

/** One unary call to a metadata server's client service (no redirects, no retries). */
export function unaryCall(target: string, method: string, request: WireRequest, timeoutMs: number): Promise<WireReply> {
  const stub = new MetadataClientConstructor(target, grpc.credentials.createInsecure()) as unknown as Record<
    string,
    (r: WireRequest, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: WireReply) => void) => void
  > &
    grpc.Client;
  return new Promise((resolve, reject) => {
    stub[method]!.call(stub, request, { deadline: Date.now() + timeoutMs }, (e, reply) => {
      stub.close();
      if (e !== null) reject(e);
      else resolve(reply ?? {});
    });
  });
}
